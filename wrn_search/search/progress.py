"""What ``run`` and ``resume`` show while a search runs: where the run lives, and one line on how far it got.

:class:`ProgressLine` is a Ray Tune callback on the driver. It counts finished trials from
``trials.jsonl``, which the searcher appends to just before Tune calls its callbacks, so the
counts are the study's without reading the study (a second or more per read at thousands of trials).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd
from ray import tune
from ray.tune.experiment import Trial

from wrn_search.pareto import hypervolume, pareto_front, reference_point
from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import TRIAL_LOG, RunManifest
from wrn_search.runs.logs import TRIAL_SCHEMA, EpochsSpent

#: Seconds between redraws of the line on a terminal.
REDRAW_S = 1.0
#: Least seconds between two plain lines (stderr is a file or a pipe): at most one per trial end.
PLAIN_INTERVAL_S = 10.0


def announce(headline: str, run_dir: Path, stream: TextIO | None = None) -> None:
    """The first lines of ``run`` and ``resume``: ``headline`` (naming the run directory), and how to watch it."""
    stream = stream if stream is not None else sys.stderr
    print(f"wrn-search: {headline}", file=stream)
    print(f"wrn-search: watch it with: wrn-search dashboard {run_dir}", file=stream, flush=True)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: short, so the line stays one line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Finished:
    """A run's finished trials as the searcher told the study, and the Pareto front they make."""

    trials: int
    stopped_early: int
    failed: int
    front: int
    #: The share of the reference box the front dominates (the dashboard's "hypervolume of the reference box").
    hypervolume: float
    #: Epochs that trials which ended before the full budget will never train.
    forgone_epochs: int
    trial_ids: frozenset[str]

    @classmethod
    def read(cls, run_dir: Path, manifest: RunManifest) -> Finished:
        objectives = list(manifest.objectives)
        ends = {record["number"]: record for record in read_jsonl(run_dir / TRIAL_LOG, TRIAL_SCHEMA)}
        frame = pd.DataFrame.from_records(list(ends.values()),
                                          columns=["number", "trial_id", "name", "state", "epochs", *objectives])
        front = pareto_front(frame, objectives)
        reference = reference_point(frame, objectives)
        volume = hypervolume(front[objectives].to_numpy(dtype=float), reference) / math.prod(reference) \
            if len(front) else 0.0
        epochs = pd.to_numeric(frame["epochs"], errors="coerce").fillna(0)
        return cls(trials=len(frame), stopped_early=int((frame["state"] == "PRUNED").sum()),
                   failed=int((frame["state"] == "FAIL").sum()), front=len(front), hypervolume=volume,
                   forgone_epochs=int((manifest.epochs - epochs).clip(lower=0).sum()),
                   trial_ids=frozenset(frame["trial_id"].dropna()))


class ProgressLine(tune.Callback):
    """One line on a search: trials finished of all, running, stopped early, the front's size and
    normalised hypervolume, an ETA from the epochs left in the budget, and the time elapsed.

    ``in_place`` redraws it on a terminal (carriage return); otherwise it is a plain line at a
    trial's end, at most one per :data:`PLAIN_INTERVAL_S`, so a log stays readable. The last state
    is always printed, on a line of its own, when the experiment ends (also after Ctrl-C).
    """

    def __init__(self, run_dir: str | Path, manifest: RunManifest, in_place: bool, stream: TextIO | None = None):
        self.run_dir = Path(run_dir)
        self.manifest = manifest
        self.in_place = in_place
        self.stream = stream if stream is not None else sys.stderr
        #: The epochs of each Tune trial, as the searcher counts them against the epoch budget.
        self.spent = EpochsSpent.read(self.run_dir)
        self.trained_before = self.spent.total
        self.finished = Finished.read(self.run_dir, manifest)
        self.running = 0
        self.started = time.monotonic()
        self.shown = -math.inf
        self.width = 0
        self.previous = ""

    def setup(self, **info) -> None:
        self.started = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.spent.count(trial.trial_id, result.get("epoch"))

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.in_place and time.monotonic() - self.shown >= REDRAW_S:
            self.running = self.count_running(trials)
            self.show()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.trial_ended(trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.trial_ended(trials)

    def on_experiment_end(self, trials, **info) -> None:
        self.finished = Finished.read(self.run_dir, self.manifest)
        self.running = self.count_running(trials)
        self.show(last=True)

    def trial_ended(self, trials) -> None:
        self.finished = Finished.read(self.run_dir, self.manifest)
        self.running = self.count_running(trials)
        if self.in_place or time.monotonic() - self.shown >= PLAIN_INTERVAL_S:
            self.show()

    def count_running(self, trials) -> int:
        """Running Tune trials the searcher has not told as finished (Tune marks a trial's end after its callbacks)."""
        return sum(trial.status == Trial.RUNNING and trial.trial_id not in self.finished.trial_ids
                   for trial in trials)

    def epochs_left(self, trained: int) -> int:
        """Epochs still to train: all trials at the full budget, less what ended early, capped by the epoch budget."""
        return self.manifest.trial_budget.epochs_left(self.manifest.epochs, trained, self.finished.forgone_epochs)

    def line(self) -> str:
        trained = self.spent.total
        elapsed = time.monotonic() - self.started
        trained_now = trained - self.trained_before  # the rate is this session's: a resume may run on other nodes
        left = self.epochs_left(trained)
        if left == 0 or trained_now > 0:
            eta = duration(left * elapsed / max(trained_now, 1))
        else:
            eta = "?"
        done = self.finished
        failed = f", {done.failed} failed" if done.failed else ""
        stopped = "stopped" if self.in_place else "stopped early"
        counts = (f"{done.trials}/{self.manifest.samples} finished, {self.running} running, "
                  f"{done.stopped_early} {stopped}{failed}; front {done.front}")
        if self.in_place:  # short, for 80 columns: the start lines already said who is talking
            return f"{counts}, hv {done.hypervolume:.3f}; {duration(elapsed)}, ETA {eta}"
        return f"wrn-search: {counts}, hypervolume {done.hypervolume:.4f}; ETA {eta}, {duration(elapsed)} elapsed"

    def show(self, last: bool = False) -> None:
        line = self.line()
        if self.in_place:
            line = line[: shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be redrawn
            self.stream.write("\r" + line.ljust(self.width) + ("\n" if last else ""))
            self.width = len(line)
        elif line != self.previous:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = time.monotonic()
        self.previous = line
