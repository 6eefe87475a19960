"""The run's logs: what ``epochs.jsonl``, ``trials.jsonl`` and ``scheduler.jsonl`` hold, every trained epoch
recorded once (:class:`EpochLog`), and the epochs a run has spent (:class:`EpochsSpent`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from wrn_search.records import EpochRecord, TrialConfig
from wrn_search.runs.files import LogSchema, Number, _jsonable, append_jsonl, read_jsonl
from wrn_search.runs.layout import EPOCH_LOG

#: The fields of ``epochs.jsonl`` that the results, the curves and the epoch count read.
EPOCH_SCHEMA = LogSchema(
    types={"trial_id": str, "number": int | None, "name": str | None, "epoch": int, "val_error": Number | None,
           "epoch_seconds": Number | None, "params": Number | None, "macs": Number | None, "outcome": str,
           "time": Number, "retrained": bool},
    required=("trial_id", "epoch"),
)


#: The fields of ``trials.jsonl`` that the results read.
TRIAL_SCHEMA = LogSchema(
    types={"number": int, "trial_id": str | None, "name": str | None, "state": str, "outcome": str, "epochs": int,
           "val_error": Number | None, "params": Number | None, "macs": Number | None, "started": Number | None,
           "time": Number | None},
    required=("number",),
)


#: The fields of ``scheduler.jsonl`` (one rung decision a line) that a resumed scheduler replays.
SCHEDULER_SCHEMA = LogSchema(
    types={"milestone": int, "trial_id": str, "values": list[Number], "stopped": bool},
    required=("milestone", "trial_id", "values", "stopped"),
)


#: What ``epochs.jsonl`` keeps of a reported epoch.
EPOCH_KEYS = ("epoch", "train_loss", "val_error", "val_loss", "lr", "images_per_s", "epoch_seconds",
              "params", "macs", "outcome", "node_id")


def epoch_record(trial_id: str, config: TrialConfig, result: dict, resources: dict, now: float) -> EpochRecord:
    """One line of ``epochs.jsonl``: the trial, its reported epoch, the resources it held, and when."""
    record = {"trial_id": trial_id, "number": config.get("number"), "name": config.get("name")}
    record.update({key: result[key] for key in EPOCH_KEYS if key in result})
    record["resources"] = resources
    record["time"] = now
    return record


#: What an epoch's training produced: a line equal in these is the same epoch reported again.
TRAINED_KEYS = tuple(key for key in EPOCH_KEYS if key != "node_id")


class EpochLog:
    """``epochs.jsonl``, appended once per trained epoch of a study trial.

    A trial that finished just before a driver kill reports its last epoch again when the run resumes:
    the same line, not logged twice. An epoch trained again (a trial restored from an older checkpoint
    than its newest) is logged again with ``"retrained": true``; readers keep the last line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._logged: dict[tuple, str] = {}
        self._highest: dict = {}  # study trial -> its highest logged epoch
        for record in read_jsonl(self.path, EPOCH_SCHEMA):
            self._remember(record)

    def missing(self, record: dict, start: int = 0) -> range:
        """The epochs between the trial's highest logged one (or ``start``, the epoch a trial continuing one
        stopped early began from) and ``record``'s: a kill or a full disk between a trial's checkpoint and the
        driver's line loses that line, and the trial then continues from the checkpoint."""
        trial, epoch = _epoch_key(record)
        return range(self._highest.get(trial, start) + 1, epoch)

    def append(self, record: dict) -> bool:
        """Log ``record`` (fsynced) unless the same epoch was logged with the same results; whether it was."""
        key, trained = _epoch_key(record), _trained(record)
        if key in self._logged:
            if self._logged[key] == trained:
                return False
            record = {**record, "retrained": True}
        append_jsonl(self.path, record)
        self._remember(record)
        return True

    def _remember(self, record: dict) -> None:
        trial, epoch = key = _epoch_key(record)
        self._logged[key] = _trained(record)
        self._highest[trial] = max(self._highest.get(trial, epoch), epoch)


def _epoch_key(record: dict) -> tuple:
    """The study trial (Ray's trial id where there is no study number) and epoch a line is about."""
    number = record.get("number")
    return (record["trial_id"] if number is None else number, record["epoch"])


def _trained(record: dict) -> str:
    """What the epoch's training produced, as JSON (NaN equals NaN there)."""
    return json.dumps([record.get(key) for key in TRAINED_KEYS], default=_jsonable)


@dataclass
class EpochsSpent:
    """The epochs each Ray trial trained, counted against ``search.epoch_budget``: from the epoch before its
    first report to its highest. A re-run from a checkpoint reports epochs again, and they count once; a trial
    that continues one stopped early first reports the epoch after that trial's, and counts only what it trained.
    """

    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def count(self, trial_id: str, epoch: int | None) -> None:
        if epoch is None:
            return
        first, highest = self.spans.get(trial_id, (int(epoch) - 1, 0))
        self.spans[trial_id] = (min(first, int(epoch) - 1), max(highest, int(epoch)))

    @property
    def total(self) -> int:
        return sum(highest - first for first, highest in self.spans.values())

    @classmethod
    def read(cls, run_dir: str | Path) -> EpochsSpent:
        """What ``epochs.jsonl`` says: the durable log, newer than Tune's snapshot."""
        spent = cls()
        for record in read_jsonl(Path(run_dir) / EPOCH_LOG, EPOCH_SCHEMA):
            spent.count(record["trial_id"], record["epoch"])
        return spent
