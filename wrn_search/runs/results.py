"""Trial table and learning curves of a run directory (see docs/run-directory.md).

The study is the truth for states and objective values; ``epochs.jsonl`` adds
the curves, epochs trained and time. Ray's own result files are never read:
a killed driver can leave them truncated. Works on a finished run, a running
one and one resumed after a kill (repeated epochs, a torn last line).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from wrn_search.compat import upgrade_trial_attrs
from wrn_search.network.spec import SPEC_COLUMNS
from wrn_search.pareto import pareto_front
from wrn_search.plain import plain
from wrn_search.runs.files import read_jsonl, write_atomic
from wrn_search.runs.layout import EPOCH_LOG, PARETO_CSV, RESULTS_CSV, TRIAL_LOG, RunManifest
from wrn_search.runs.logs import EPOCH_SCHEMA, TRIAL_SCHEMA
from wrn_search.runs.storage import open_study
from wrn_search.training.recipe import CONTINUES, TRAINING_HYPERPARAMETERS

#: Leading columns of :func:`load_run`; the searched hyperparameters, then user attributes the search adds follow.
COLUMNS = [
    "number", "trial_id", *SPEC_COLUMNS,
    "params", "macs", "val_error", "epochs", "state", "outcome",
    "wall_seconds", "started", "finished", "elapsed_seconds",
]

#: User attributes (and results columns) of a trial reused from an earlier run (``wrn-search run --warm-start``):
#: that run's directory and the trial's number there. Empty for the trials this run trained.
SOURCE_RUN = "source_run"
SOURCE_TRIAL = "source_trial"
#: Study states of a trial not yet told: asked for (WAITING) or training (RUNNING).
UNFINISHED_STATES = ("RUNNING", "WAITING")
#: Counts, held as nullable integers (a running trial may not know its cost yet); see :func:`_counts`.
#: ``batch_size`` is there only when the run searched it.
INTEGER_COLUMNS = ["number", "depth", "blocks_per_group", "params", "macs", "epochs", "batch_size"]


def load_curves(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch rows of ``epochs.jsonl``, one per (number, epoch), sorted.

    A trial re-run after a kill repeats epochs; a later line supersedes every
    earlier line of that trial at the same or a later epoch, so the curve is
    the latest attempt's (a restart from epoch 1 discards the whole old curve).
    """
    records = [r for r in read_jsonl(Path(run_dir) / EPOCH_LOG, EPOCH_SCHEMA) if r.get("number") is not None]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=["number", "trial_id", "name", "epoch", "val_error", "epoch_seconds", "time"])
    # Line i survives iff every later line of its trial is at a later epoch.
    later_min = (
        frame[::-1].groupby("number")["epoch"].transform(lambda epochs: epochs.cummin().shift(1))[::-1]
    )
    frame = frame[later_min.isna() | (frame["epoch"] < later_min)]
    return frame.sort_values(["number", "epoch"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class RunResults:
    """A run read once: what needs several of its tables (the end of a search writes the CSVs, the report
    and the printed front) shares one read, from one moment of a running search."""

    run_dir: Path
    manifest: RunManifest
    trials: pd.DataFrame
    curves: pd.DataFrame

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResults:
        run_dir = Path(run_dir).resolve()
        manifest = RunManifest.load(run_dir)
        curves = load_curves(run_dir)
        return cls(run_dir, manifest, _trial_table(run_dir, manifest, curves), curves)

    @functools.cached_property
    def front(self) -> pd.DataFrame:
        """The Pareto set over the study's objectives (as in ``pareto.csv``)."""
        return pareto_front(self.trials, self.manifest.objectives)

    @property
    def states(self) -> dict[str, int]:
        """Trials by study state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ...)."""
        return {str(state): int(count) for state, count in self.trials["state"].value_counts().items()}

    @property
    def unfinished(self) -> int:
        """Trials the study has not been told the end of: a resume continues them."""
        return int(self.trials["state"].isin(UNFINISHED_STATES).sum())


#: Called with a run's results once its files are written (the CLI writes the report with it).
ResultsHook = Callable[[RunResults], object]


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """One row per trial of the study: spec fields, cost, val error, epochs, state, outcome, time."""
    return RunResults.load(run_dir).trials


def _trial_table(run_dir: Path, manifest: RunManifest, curves: pd.DataFrame) -> pd.DataFrame:
    """:func:`load_run`'s frame, from the study and the logs, given the run's :func:`load_curves`."""
    study = open_study(run_dir, manifest)
    created = datetime.fromisoformat(manifest.created).timestamp()
    last_epochs = curves.groupby("number").tail(1).set_index("number") if len(curves) else curves
    ends = {r["number"]: r for r in read_jsonl(run_dir / TRIAL_LOG, TRIAL_SCHEMA)}
    seconds = curves.groupby("number")["epoch_seconds"].sum() if "epoch_seconds" in curves else pd.Series()
    rows = []
    for trial in study.get_trials(deepcopy=False):
        last = last_epochs.loc[trial.number].to_dict() if trial.number in last_epochs.index else {}
        end = ends.get(trial.number, {})
        attrs = upgrade_trial_attrs(trial.user_attrs)
        row = {**{k: v for k, v in end.items() if k not in ("time", "started", "state")}, **attrs,
               **{k: v for k, v in trial.params.items() if k in TRAINING_HYPERPARAMETERS}}
        if trial.values is not None:
            row.update(zip(manifest.objectives, trial.values))
        for key in ("trial_id", "name", "params", "macs", "val_error"):
            if _missing(row.get(key)):
                row[key] = last.get(key, math.nan)
        row["number"] = trial.number
        row["state"] = trial.state.name
        if trial.state.name in UNFINISHED_STATES:
            row["outcome"] = trial.state.name.lower()
        row["epochs"] = int(last["epoch"]) if last else row.get("epochs", 0)
        row["wall_seconds"] = float(seconds.get(trial.number, 0.0))
        # The searcher's log has the times (simulated ones for a simulated run); the study's are the fallback.
        row["started"] = _first(end.get("started"), _timestamp(trial.datetime_start))
        row["finished"] = _first(end.get("time"), _timestamp(trial.datetime_complete))
        row["elapsed_seconds"] = row["finished"] - created
        rows.append(row)
    frame = pd.DataFrame.from_records(rows)
    for column in COLUMNS:
        if column not in frame:
            text = column in ("trial_id", "name", "block_type", "outcome")
            frame[column] = pd.Series(dtype=object if text else float)
    for column in INTEGER_COLUMNS:
        if column in frame:
            frame[column] = _counts(frame[column])
    if "retry_of" in frame:  # an errored trial that a resume re-ran as a new trial
        retried = frame["retry_of"].dropna().astype(int)
        frame.loc[frame["number"].isin(retried), "outcome"] = "retried"
    if CONTINUES in frame:  # a trial stopped early that a later trial continued from its checkpoint
        continued = frame[CONTINUES].dropna().astype(int)
        frame.loc[frame["number"].isin(continued), "outcome"] = "continued"
    leading = COLUMNS + hyperparameter_columns(frame)
    return frame[leading + [c for c in frame.columns if c not in leading]]


def hyperparameter_columns(table: pd.DataFrame | pd.Series | dict) -> list[str]:
    """The searched training hyperparameters (``lr``, ``weight_decay``, ``batch_size``) among a frame's
    columns or a row's fields: what tells apart two trials of the same net."""
    return [name for name in TRAINING_HYPERPARAMETERS if name in table]


def hyperparameters(row: pd.Series | dict) -> dict:
    """A results row's searched hyperparameters as plain Python values (JSON-ready), missing ones left out."""
    return {name: plain(row[name]) for name in hyperparameter_columns(row) if pd.notna(row[name])}


def hyperparameter_text(row: pd.Series | dict) -> str:
    """``lr=0.05 batch_size=64``: a row's searched hyperparameters in one line (empty when none are searched)."""
    return " ".join(f"{name}={value:g}" for name, value in hyperparameters(row).items())


def reused(frame: pd.DataFrame) -> pd.Series:
    """Mask of the trials reused from earlier runs (they cost this run nothing)."""
    return frame[SOURCE_RUN].notna() if SOURCE_RUN in frame else pd.Series(False, index=frame.index)


def source_text(row: pd.Series | dict) -> str:
    """``reused from RUN #12`` for a trial reused from an earlier run, else empty."""
    source = row.get(SOURCE_RUN)
    if not isinstance(source, str):
        return ""
    return f"reused from {Path(source).name} #{int(row[SOURCE_TRIAL])}"


def write_results(results: RunResults) -> tuple[Path, Path]:
    """Write ``results.csv`` (every trial) and ``pareto.csv`` (``study.best_trials``); return their paths."""
    paths = results.run_dir / RESULTS_CSV, results.run_dir / PARETO_CSV
    for path, table in zip(paths, (results.trials, results.front)):
        write_atomic(path, table.to_csv(index=False))  # a kill mid-write leaves the previous file
    return paths


def _counts(values: pd.Series) -> pd.Series:
    """Whole numbers as nullable int64, or the column as float when a value does not fit int64.

    A trial may report anything (a widen factor of 1e9 has more params than int64 holds, a cost may
    be infinite); its row stays readable, as float, rather than crash every reader of the run.
    """
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if (numbers.abs() < 2.0**63).where(numbers.notna(), True).all():
        return numbers.round().astype("Int64")
    return numbers


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _first(logged: float | None, fallback: float) -> float:
    return fallback if logged is None else float(logged)


def _timestamp(moment: datetime | None) -> float:
    """Unix time of Optuna's naive local datetimes."""
    return moment.timestamp() if moment is not None else math.nan
