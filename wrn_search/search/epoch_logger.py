"""The durable curves: every trained epoch appended to the run's ``epochs.jsonl`` once, by the driver."""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune

from wrn_search.runs.checkpoints import TrialCheckpoints
from wrn_search.runs.layout import EPOCH_LOG, RunManifest
from wrn_search.runs.logs import EpochLog, epoch_record
from wrn_search.training.recipe import START_EPOCH


class EpochLogger(tune.Callback):
    """Appends every trained epoch to ``epochs.jsonl`` once, on the driver, fsynced: the durable curves.

    Saved with the experiment and restored by ``resume``: each session reads the log again
    (:class:`~wrn_search.runs.layout.EpochLog`), so an epoch reported again after a kill is not logged twice,
    and an epoch whose line a kill lost is taken from the trial's checkpoint, which keeps every epoch's metrics.
    """

    def __init__(self, run_dir: str | Path):
        self.path = str(Path(run_dir) / EPOCH_LOG)
        self._log: EpochLog | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path}  # what was logged is read from the log, not from the snapshot

    def __setstate__(self, state: dict) -> None:
        self.__init__(Path(state["path"]).parent)

    def setup(self, **info) -> None:
        self._log = EpochLog(self.path)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self._log is None:
            self.setup()
        resources = trial.placement_group_factory.required_resources
        record = epoch_record(trial.trial_id, trial.config, result, resources, time.time())
        lost = self._log.missing(record, int(trial.config.get(START_EPOCH, 0)))
        if lost and record["number"] is not None:
            trained = {metrics.get("epoch"): metrics for metrics in self._checkpoints(record["number"]).history()}
            for epoch in lost:
                if epoch in trained:
                    self._log.append(epoch_record(trial.trial_id, trial.config, trained[epoch], resources, time.time()))
        self._log.append(record)

    def _checkpoints(self, number: int) -> TrialCheckpoints:
        return TrialCheckpoints(RunManifest.load(Path(self.path).parent).tune_path, number)
