"""What runs, studies and checkpoints written by earlier wrn-search versions need to be read, in one place.

The run format is still version 1 (``runs/layout.FORMAT_VERSION``): these fields were added or renamed
within it, so an old run resumes, reports and exports like a new one (tests/test_old_runs.py). A change
that an old run cannot be read through belongs in a new format version instead, with a line in
docs/run-directory.md saying what an old run needs. (Older runs' default study, ``study.db``, is not
a shim: SQLite stays a study storage, and ``runs/storage.study_storage`` finds it.) The flat layout's
module names, under which a run made before the layout by layer pickled its Tune snapshot, resolve
through :func:`alias_old_modules`, which ``resume`` calls before it restores a snapshot.
"""

from __future__ import annotations

import importlib
import sys
import time
import types

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


#: The modules of the flat layout (runs made before the layout by layer) and the modules their names went
#: to: a run made then has a Tune snapshot (``tuner.pkl``, the searcher's state) that pickles its
#: searcher, space, sampler, scheduler and callbacks under the old names. A name is looked up in each
#: new module in turn.
OLD_MODULES: dict[str, tuple[str, ...]] = {
    "wrn_search.spec": ("wrn_search.network.spec",),
    "wrn_search.model": ("wrn_search.network.model",),
    "wrn_search.recipe": ("wrn_search.training.recipe", "wrn_search.network.spec"),
    "wrn_search.data": ("wrn_search.training.data",),
    "wrn_search.loader": ("wrn_search.training.loader",),
    "wrn_search.train": ("wrn_search.training.engine", "wrn_search.training.device",
                         "wrn_search.training.checkpoint_format", "wrn_search.training.recipe"),
    "wrn_search.epoch_bar": ("wrn_search.training.epoch_bar",),
    "wrn_search.checkpoints": ("wrn_search.runs.checkpoints",),
    "wrn_search.space": ("wrn_search.spaces.space", "wrn_search.spaces.schema", "wrn_search.spaces.sampling",
                         "wrn_search.spaces.parse"),
    "wrn_search.budget": ("wrn_search.spaces.budget",),
    "wrn_search.rundir": ("wrn_search.runs.layout", "wrn_search.runs.storage", "wrn_search.runs.files",
                          "wrn_search.runs.logs"),
    "wrn_search.lock": ("wrn_search.runs.lock",),
    "wrn_search.results": ("wrn_search.runs.results", "wrn_search.runs.storage"),
    "wrn_search.run_status": ("wrn_search.runs.status",),
    "wrn_search.export": ("wrn_search.runs.export",),
    # AskTellGridSampler was the searcher's before it moved to the samplers: grid runs pickled it from there.
    "wrn_search.searcher": ("wrn_search.search.searcher", "wrn_search.search.samplers"),
    "wrn_search.samplers": ("wrn_search.search.samplers",),
    "wrn_search.schedulers": ("wrn_search.search.schedulers",),
    "wrn_search.trainable": ("wrn_search.search.trainable",),
    "wrn_search.resources": ("wrn_search.search.resources",),
    "wrn_search.cluster": ("wrn_search.search.cluster",),
    "wrn_search.watchdog": ("wrn_search.search.watchdog",),
    "wrn_search.failures": ("wrn_search.search.failures",),
    "wrn_search.interrupts": ("wrn_search.search.interrupts",),
    "wrn_search.progress": ("wrn_search.search.progress",),
    "wrn_search.snapshot": ("wrn_search.search.snapshot",),
    "wrn_search.warmstart": ("wrn_search.search.warmstart",),
    "wrn_search.table": ("wrn_search.simulation.table",),
    "wrn_search.tabulate": ("wrn_search.simulation.tabulate",),
    "wrn_search.simulate": ("wrn_search.simulation.simulate",),
}
#: Names renamed as they moved: (old module, old name) -> new name.
OLD_NAMES = {("wrn_search.budget", "Budget"): "CostBounds"}
#: The flat layout's ``wrn_search.search`` is now the search package; what a snapshot pickled from it.
OLD_SEARCH_NAMES = {"EpochLogger": "wrn_search.search.epoch_logger"}


class _OldModule(types.ModuleType):
    """A module name of the flat layout: each name it is asked for comes from the module it went to."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name)
        self._homes = homes

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        new = OLD_NAMES.get((self.__name__, name), name)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, new):
                return getattr(module, new)
        raise AttributeError(f"{self.__name__}.{name} has no new home in {', '.join(self._homes)}")


def alias_old_modules() -> None:
    """Make the flat layout's module names resolve again, so a run made before the layout by layer
    resumes: Tune unpickles its snapshot by those names. Only for this process; idempotent."""
    for old, homes in OLD_MODULES.items():
        sys.modules.setdefault(old, _OldModule(old, homes))
    search = importlib.import_module("wrn_search.search")
    for name, home in OLD_SEARCH_NAMES.items():
        setattr(search, name, getattr(importlib.import_module(home), name))
