"""A trial's checkpoints on Tune's storage: the newest one that loads wins, whatever Ray's snapshot says.

Ray's experiment snapshot lags the checkpoints on disk. With ``num_to_keep`` a snapshot can
name a checkpoint Ray has already deleted (the restore then fails the trial), and a
snapshot taken before a trial's first checkpoint restarts it from epoch 1. So Ray keeps
every checkpoint directory (``CheckpointConfig(num_to_keep=None)``), and the trial:

- writes its epoch beside each checkpoint (:data:`EPOCH_FILE`);
- on start, loads the newest checkpoint that loads among every directory of its study
  trial: its own, and that of a Tune trial the searcher asked again after a kill lost it;
- after each checkpoint, deletes the weights of all but its newest :data:`KEEP`, leaving
  the directories (and their epoch) for a snapshot that may name them.

Trial directories are named ``NNNNN-<net>-<trial id>`` after the study trial number
(:func:`trial_dirname`), which is how a trial finds the directories of its study trial.
Paths are local paths or URIs that ``pyarrow.fs`` opens (``s3://...``), like Tune's storage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs
from ray import tune

from wrn_search.training.checkpoint_format import CHECKPOINT_FILE

#: The checkpoint's epoch, written beside the weights: a small file to sort checkpoints by.
EPOCH_FILE = "epoch.json"
#: Checkpoints whose weights a trial keeps.
KEEP = 2
_CHECKPOINT_DIR = re.compile(r"^checkpoint_\d+$")


def storage_fs(path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The file system and path of a Tune storage location: a local path as is, else a URI (``s3://...``)."""
    if "://" not in str(path):
        return pyarrow.fs.LocalFileSystem(), str(Path(path).resolve())
    return pyarrow.fs.FileSystem.from_uri(str(path))


def trial_prefix(number: int) -> str:
    return f"{number:05d}-"


def dirname(config: dict, trial_id: str) -> str:
    """A trial directory's name: the study trial number, the net, and Tune's trial id."""
    if config.get("number") is None:
        return trial_id
    net = re.sub(r"[^A-Za-z0-9.-]+", "_", str(config.get("name", ""))).strip("_")
    return f"{trial_prefix(config['number'])}{net}-{trial_id}"


def trial_dirname(trial) -> str:
    """Tune's ``trial_dirname_creator`` (a module-level function: Tune pickles it with the experiment)."""
    return dirname(trial.config, trial.trial_id)


def write_epoch(directory: Path, epoch: int) -> None:
    (Path(directory) / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}) + "\n")


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint directory with its weights still in place."""

    epoch: int
    path: str


class TrialCheckpoints:
    """The checkpoints of one study trial under Tune's experiment directory ``experiment_path``."""

    def __init__(self, experiment_path: str, number: int):
        self.fs, self.root = storage_fs(experiment_path)
        self.number = number

    def trial_dir(self, config: dict, trial_id: str) -> str:
        return f"{self.root}/{dirname(config, trial_id)}"

    def _children(self, path: str) -> list[pyarrow.fs.FileInfo]:
        selector = pyarrow.fs.FileSelector(path, allow_not_found=True)
        return [info for info in self.fs.get_file_info(selector) if info.type == pyarrow.fs.FileType.Directory]

    def trial_dirs(self) -> list[str]:
        prefix = trial_prefix(self.number)
        return [info.path for info in self._children(self.root) if info.base_name.startswith(prefix)]

    def stored(self, trial_dir: str) -> list[StoredCheckpoint]:
        """The checkpoints of ``trial_dir`` whose weights are there, newest epoch first."""
        folders = [info.path for info in self._children(trial_dir) if _CHECKPOINT_DIR.match(info.base_name)]
        weights = self.fs.get_file_info([f"{folder}/{CHECKPOINT_FILE}" for folder in folders])
        found = []
        for folder, info in zip(folders, weights):
            if info.type != pyarrow.fs.FileType.File:
                continue
            epoch = self._epoch(folder)
            if epoch is not None:
                found.append(StoredCheckpoint(epoch, folder))
        return sorted(found, key=lambda checkpoint: checkpoint.epoch, reverse=True)

    def _epoch(self, folder: str) -> int | None:
        try:
            with self.fs.open_input_stream(f"{folder}/{EPOCH_FILE}") as stream:
                return int(json.loads(stream.readall())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # written by an older wrn-search, or torn by a kill: not a candidate

    def newest_first(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint of the study trial, over all its trial directories, newest epoch first."""
        found = [checkpoint for trial_dir in self.trial_dirs() for checkpoint in self.stored(trial_dir)]
        return sorted(found, key=lambda checkpoint: checkpoint.epoch, reverse=True)

    @contextmanager
    def local(self, checkpoint: StoredCheckpoint) -> Iterator[Path]:
        """The checkpoint's weights file as a local path (downloaded from remote storage)."""
        with tune.Checkpoint(checkpoint.path, filesystem=self.fs).as_directory() as directory:
            yield Path(directory) / CHECKPOINT_FILE

    def history(self) -> list[dict]:
        """The metrics of every epoch up to the newest checkpoint that loads (the trainer keeps them in it)."""
        import torch  # only here: the driver, the searcher and a simulation never load weights

        for checkpoint in self.newest_first():
            try:
                with self.local(checkpoint) as path:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                return list(state["history"])
            except Exception:  # noqa: BLE001, S112 - torn by a kill, or not a trainer's: the next newest
                continue
        return []

    def prune(self, trial_dir: str, keep: int = KEEP) -> None:
        """Delete the weights of all but the newest ``keep`` checkpoints of ``trial_dir``; keep the folders."""
        for checkpoint in self.stored(trial_dir)[keep:]:
            self.fs.delete_file(f"{checkpoint.path}/{CHECKPOINT_FILE}")
