"""Ray's experiment snapshot on storage: whether ``resume`` can restore it.

Tune writes its snapshot files atomically in a local staging folder, then copies them to the
run's storage, in place: a full disk or a kill mid-copy leaves one torn there (a cut JSON,
a pickle without its end), and ``Tuner.restore`` of that prints a traceback and restores
nothing, leaving the study's unfinished trials RUNNING. A torn snapshot counts as none:
``resume`` then starts a new experiment whose searcher asks those trials again.
"""

from __future__ import annotations

import fnmatch
import json
import pickletools

import pyarrow.fs

from wrn_search.runs.checkpoints import storage_fs

#: What ``Tuner.restore`` reads, newest file of each pattern: the experiment state (JSON) first, the rest pickles.
EXPERIMENT_STATE = "experiment_state-*.json"
SNAPSHOT_PICKLES = ("tuner.pkl", "search_gen_state-*.json", "searcher-state-*.pkl", "callback-states-*.pkl")


def complete_pickle(data: bytes) -> bool:
    """Whether ``data`` is a whole pickle (read opcode by opcode, nothing unpickled)."""
    try:
        return any(opcode.name == "STOP" for opcode, _, _ in pickletools.genops(data))
    except Exception:  # noqa: BLE001  (pickletools raises ValueError and others on a cut or garbled stream)
        return False


def complete_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False
    return True


def newest(names: list[str], pattern: str) -> str | None:
    """The newest of Tune's snapshot files matching ``pattern`` (their names end in a sortable time)."""
    return max(fnmatch.filter(names, pattern), default=None)


def has_snapshot(tune_path: str) -> bool:
    """Whether Tune wrote an experiment snapshot that restores: none before the first one, none if torn."""
    fs, root = storage_fs(tune_path)
    names = [info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))]
    state = newest(names, EXPERIMENT_STATE)
    if state is None or "tuner.pkl" not in names:
        return False
    files = {state: complete_json, **{name: complete_pickle for pattern in SNAPSHOT_PICKLES
                                      if (name := newest(names, pattern)) is not None}}
    for name, complete in files.items():
        with fs.open_input_stream(f"{root}/{name}") as stream:
            if not complete(stream.readall()):
                return False
    return True
