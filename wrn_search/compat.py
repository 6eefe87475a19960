"""What runs, studies and checkpoints written by earlier wrn-search versions need to be read, in one place.

The run format is still version 1 (``runs/layout.FORMAT_VERSION``): these fields were added or renamed
within it, so an old run resumes, reports and exports like a new one (tests/test_old_runs.py). A change
that an old run cannot be read through belongs in a new format version instead, with a line in
docs/run-directory.md saying what an old run needs. (Older runs' default study, ``study.db``, is not
a shim: SQLite stays a study storage, and ``runs/storage.study_storage`` finds it.)
"""

from __future__ import annotations

import time

#: Checkpoint identity fields added later, with the value a checkpoint written before them was trained with.
CHECKPOINT_FIELDS_ADDED = {("config", "init"): "torchvision"}

#: Trial user attributes renamed: the old name -> the new one.
TRIAL_ATTRS_RENAMED = {"block": "block_type"}

#: What a searcher saved in an older Tune snapshot counted with, and no longer does.
SEARCHER_FIELDS_DROPPED = ("trained", "start_epochs")


def upgrade_trial_attrs(attrs: dict) -> dict:
    """A trial's user attributes under today's names."""
    attrs = dict(attrs)
    for old, new in TRIAL_ATTRS_RENAMED.items():
        if old in attrs:
            attrs.setdefault(new, attrs.pop(old))
    return attrs


def upgrade_searcher_state(state: dict) -> None:
    """Bring the ``__dict__`` of a ``StudySearcher`` restored from an older snapshot up to date, in place:
    the fields it lacks get their starting values and those it no longer keeps go."""
    if "clock" in state:  # an older searcher called its time source "clock" (a simulation's clock is seconds)
        state["now"] = state.pop("clock")
    for name, start in (("now", lambda: time.time), ("started", dict), ("start_up", list),
                        ("exhausted", lambda: False)):
        if name not in state:
            state[name] = start()
    for name in SEARCHER_FIELDS_DROPPED:
        state.pop(name, None)
