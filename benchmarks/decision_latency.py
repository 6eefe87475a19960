"""Decision latency: the driver's seconds per decision as the study grows, simulated (how many GPUs one driver feeds).

A Ray Tune driver makes every search decision on one thread while the workers wait:
``suggest`` a config (the sampler over the study, then the trial's attributes written to
the storage), ``tell`` a finished trial (``StudySearcher.on_trial_complete``: the study's
tell and the fsynced ``trials.jsonl`` line) and ``schedule`` each reported epoch
(``SuccessiveHalving.on_trial_result``: Pareto ranks of the rung). The simulator
(:mod:`wrn_search.simulation.simulate`) makes exactly those calls, in Tune's order, on ``WORKERS``
simulated GPUs without training anything, so timing them there times the driver alone.
Each kind is reported as p50/p99 per ``WINDOW`` trials of the study's size.

A study never trains a configuration twice, so a search ends when its finite space has been
tried whole: the shipped digits-wrn table (192 configurations) ends a search after a few hundred
trials. The benchmark therefore replays a SYNTHETIC table (``synthetic_table``) of digits-wrn's
recipe over a larger grid, 103,680 configurations (:func:`large_space`), ten times the trials, so the
search is not crowded towards the untried rest of its space; ``WRN_BENCH_TABLE`` replays a recorded
table with the digits-wrn space instead.

Ours is the default search (TPE + MO-ASHA, the journal file) to 10,000 trials, checked against the
targets in its last window: p99 per suggest <= 100 ms, per reported result (the
scheduler's decision on an epoch) <= 20 ms, one driver keeping >= 1,000 GPUs busy at 10 s epochs.
Beside it, as before: random search on the journal to 10,000 trials, and the baseline, random
search on SQLite, cut to 1,000 trials (SQLite re-reads every running trial on each ask: about
0.2 s per suggest at 256 running). The row compares the default's p99 at its last window with
SQLite's at its own (a smaller study, so the ratio understates the journal's lead);
``like_for_like`` compares journal and SQLite random search over SQLite's trials.

As in ``simulate.replay`` the scheduler keeps its rungs in memory; a real search also
appends each rung decision to ``scheduler.jsonl`` (fsynced), timed once at the end of each
run (``rung_save_ms``) and added in ``gpus_busy_with_rung_saves``.

Capacity: in the last window the driver spends ``D`` seconds of decisions per reported
epoch (the window's timed calls over its epochs, so suggests and tells are spread over
the epochs). ``N`` GPUs with epochs of ``E`` seconds need ``N * D`` driver seconds every
``E`` seconds, so one driver keeps at most ``E / D`` GPUs busy, with no slack left.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from wrn_search.runs.storage import open_storage
from wrn_search.search.schedulers import SuccessiveHalving, create_scheduler
from wrn_search.search.searcher import StudySearcher
from wrn_search.simulation.simulate import Simulation, check_simulable, table_seed
from wrn_search.simulation.table import Table, load_table
from wrn_search.spaces.space import SearchSpace, load_space, parse_space

from .common import Row, describe_device, log, speedup
from .synthetic_table import write_synthetic_table

#: The space whose recipe the benchmark keeps; ``WRN_BENCH_TABLE`` (a table recorded with it) is replayed with it as is.
SPACE = "digits-wrn"
#: digits-wrn's dimensions widened to 6 N x 16 k x 3 block types x 10 dropouts x 36 learning rates = 103,680
#: configurations: over ten times the 10,000 trials a study of distinct configurations runs, so the search is
#: not crowded towards the untried rest of its space (with 10,752 it would try nearly every one).
LARGE_DIMENSIONS = {
    "blocks_per_group": [1, 2, 3, 4, 5, 6],
    "widen_factor": [0.125, 0.1875, 0.25, 0.3125, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1.25, 1.5, 1.75, 2, 2.5, 3],
    "block_types": ["B(3,3)", "B(3,1,3)", "B(1,3,1)"],
    "dropout": [round(0.05 * i, 2) for i in range(10)],
    "lr": [round(0.005 * 1.11 ** i, 5) for i in range(36)],
}
WORKERS = 256
WINDOW = 1000
KINDS = ("suggest", "tell", "schedule")
#: Epoch lengths (seconds) for which the GPUs one driver keeps busy are reported.
EPOCH_SECONDS = (1.0, 10.0, 60.0)
#: The targets for the default search, in its last window.
SUGGEST_P99_LIMIT_MS = 100.0
RESULT_P99_LIMIT_MS = 20.0
GPUS_AT_10_S_TARGET = 1000


@dataclass(frozen=True)
class Workload:
    storage: str  # "journal" or "sqlite"
    sampler: str
    trials: int

    @property
    def label(self) -> str:
        return f"{self.storage}/{self.sampler}"


#: Per mode: ours (the default search: TPE on the journal), random search on the journal, and the SQLite baseline.
WORKLOADS = {
    False: (Workload("journal", "tpe", 10_000), Workload("journal", "random", 10_000),
            Workload("sqlite", "random", 1_000)),
    True: (Workload("journal", "tpe", 1_000), Workload("journal", "random", 2_000), Workload("sqlite", "random", 300)),
}


def large_space() -> SearchSpace:
    """digits-wrn (its recipe and search) over :data:`LARGE_DIMENSIONS`."""
    document = load_space(SPACE).to_dict()
    return parse_space({**document, "dimensions": {**document["dimensions"], **LARGE_DIMENSIONS}},
                       f"{SPACE}-large")


def benchmark_table(directory: Path) -> tuple[SearchSpace, Table]:
    """The space and table replayed: ``WRN_BENCH_TABLE`` with digits-wrn, else a synthetic table of the large space
    (one seed), written into ``directory``."""
    if os.environ.get("WRN_BENCH_TABLE"):
        return load_space(SPACE), load_table(os.environ["WRN_BENCH_TABLE"])
    space = large_space()
    return space, load_table(write_synthetic_table(space, directory / "decision-latency.csv", seeds=1))


@dataclass(frozen=True)
class Call:
    """One timed driver call: its kind, the trials in the study when it was made, its wall seconds."""

    kind: str
    trials: int
    seconds: float


@dataclass
class CallLog:
    calls: list[Call] = field(default_factory=list)
    #: Trials asked so far (suggests that returned a config): the study's size.
    asked: int = 0
    told: list[str] = field(default_factory=list)

    def timed(self, kind: str, call: Callable, *args):
        start = time.perf_counter()
        value = call(*args)
        self.calls.append(Call(kind, self.asked, time.perf_counter() - start))
        return value

    def count(self, kind: str) -> int:
        return sum(1 for call in self.calls if call.kind == kind)


@dataclass
class TimedSearcher:
    """The searcher as the simulation sees it: ``suggest`` and the tell timed, everything else passed through."""

    searcher: StudySearcher
    log: CallLog

    @property
    def now(self) -> Callable[[], float]:
        return self.searcher.now

    @now.setter
    def now(self, now: Callable[[], float]) -> None:  # the simulation sets its simulated clock
        self.searcher.now = now

    def suggest(self, trial_id: str) -> dict | str | None:
        start = time.perf_counter()
        config = self.searcher.suggest(trial_id)
        seconds = time.perf_counter() - start
        if isinstance(config, dict):  # the last call says FINISHED: no trial, no decision
            self.log.asked += 1
            self.log.calls.append(Call("suggest", self.log.asked, seconds))
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.log.told.append(trial_id)
        self.log.timed("tell", self.searcher.on_trial_complete, trial_id, result, error)

    def __getattr__(self, name: str):
        return getattr(self.searcher, name)


@dataclass
class TimedScheduler:
    """The scheduler with its per-epoch decision timed."""

    scheduler: TrialScheduler
    log: CallLog

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.log.timed("schedule", self.scheduler.on_trial_result, tune_controller, trial, result)

    def __getattr__(self, name: str):
        return getattr(self.scheduler, name)


@dataclass(frozen=True)
class Window:
    """Latency of one kind of call while the study held trials ``first``..``last``."""

    run: str
    kind: str
    first: int
    last: int
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


@dataclass
class Measurement:
    """One simulated search with its timed calls, and what was checked while its study still existed."""

    label: str
    log: CallLog
    simulation: Simulation
    wall_s: float
    told_once: bool = False
    rung_save_ms: float = 0.0

    @property
    def searcher(self) -> StudySearcher:
        return self.simulation.searcher.searcher

    @property
    def scheduler(self) -> TrialScheduler:
        return self.simulation.scheduler.scheduler

    @property
    def epochs(self) -> int:
        return sum(trial.trained_epochs for trial in self.simulation.finished)


def storage_url(storage: str, directory: Path) -> str:
    return str(directory / "study.log") if storage == "journal" else f"sqlite:///{directory / 'study.db'}"


def measure(space: SearchSpace, table: Table, workers: int, storage: str, directory: Path) -> Measurement:
    """Replay ``space`` over ``table`` as ``simulate.replay`` does, with the searcher and scheduler timed."""
    check_simulable(space, table)
    searcher = StudySearcher(space, directory, "decision-latency", "", space.trial_budget(),
                             storage=open_storage(storage_url(storage, directory)))
    calls = CallLog()
    simulation = Simulation(TimedSearcher(searcher, calls),
                            TimedScheduler(create_scheduler(space, None) or FIFOScheduler(), calls),
                            table, table_seed(table, space.search.seed), workers)
    start = time.perf_counter()
    simulation.run()
    measurement = Measurement(f"{storage}/{space.search.sampler}", calls, simulation, time.perf_counter() - start)
    measurement.told_once = told_once(measurement)
    measurement.rung_save_ms = rung_save_ms(measurement.scheduler, directory)
    return measurement


def told_once(measurement: Measurement) -> bool:
    """Every asked trial finished, was told exactly once and is finished in the study."""
    told, trials = measurement.log.told, measurement.searcher.study.get_trials(deepcopy=False)
    return (len(told) == len(set(told)) == len(measurement.simulation.finished) == measurement.log.asked
            == len(trials) and all(trial.state.is_finished() for trial in trials))


def rung_save_ms(scheduler: TrialScheduler, directory: Path) -> float:
    """What a real search adds to each rung decision: one fsynced line of ``scheduler.jsonl``, timed once."""
    if not isinstance(scheduler, SuccessiveHalving):
        return 0.0
    scheduler.log_path = str(directory / "scheduler.jsonl")
    start = time.perf_counter()
    scheduler.record(scheduler.milestones[0], "timed", [0.5, 1000.0], False)
    return (time.perf_counter() - start) * 1e3


def window_of(trials: int, window: int) -> int:
    """0 while the study holds 1..window trials, 1 for the next window, ..."""
    return max(trials - 1, 0) // window


def windows(measurement: Measurement, window: int = WINDOW) -> list[Window]:
    """p50/p99 of each kind per window of the study's size; the last window ends at the last trial."""
    rows = []
    for kind in KINDS:
        grouped: dict[int, list[float]] = {}
        for call in measurement.log.calls:
            if call.kind == kind:
                grouped.setdefault(window_of(call.trials, window), []).append(call.seconds * 1e3)
        for index, milliseconds in sorted(grouped.items()):
            values = np.asarray(milliseconds)
            rows.append(Window(measurement.label, kind, index * window + 1,
                               min((index + 1) * window, measurement.log.asked), len(values),
                               float(np.percentile(values, 50)), float(np.percentile(values, 99)),
                               float(values.mean())))
    return rows


def p99_ms(calls: list[Call]) -> float:
    return float(np.percentile([call.seconds * 1e3 for call in calls], 99))


def last_window(measurement: Measurement, window: int = WINDOW) -> list[Call]:
    final = window_of(measurement.log.asked, window)
    return [call for call in measurement.log.calls if window_of(call.trials, window) == final]


def capacity(measurement: Measurement, window: int = WINDOW) -> dict:
    """Decisions per second and driver seconds per reported epoch in the last window; GPUs one driver keeps busy."""
    calls = last_window(measurement, window)
    seconds = sum(call.seconds for call in calls)
    epochs = sum(1 for call in calls if call.kind == "schedule")
    per_epoch = seconds / epochs
    scheduler = measurement.scheduler
    rungs = scheduler.rungs if isinstance(scheduler, SuccessiveHalving) else {}
    saves_per_epoch = sum(len(recorded) for recorded in rungs.values()) / measurement.log.count("schedule")
    with_saves = per_epoch + saves_per_epoch * measurement.rung_save_ms / 1e3
    return {
        "decisions_per_second": len(calls) / seconds,
        "driver_ms_per_epoch": per_epoch * 1e3,
        "driver_ms_per_epoch_whole_run": measurement.wall_s / measurement.log.count("schedule") * 1e3,
        "rung_decisions_per_epoch": saves_per_epoch,
        "gpus_busy": {f"epoch_{e:g}_s": e / per_epoch for e in EPOCH_SECONDS},
        "gpus_busy_with_rung_saves": {f"epoch_{e:g}_s": e / with_saves for e in EPOCH_SECONDS},
    }


def summary(measurement: Measurement, window: int = WINDOW) -> dict:
    """What the row keeps of one run: its size and wall time, the last window's p99 (all calls and per kind) and
    the driver's capacity."""
    calls = last_window(measurement, window)
    return {"run": measurement.label, "trials": measurement.log.asked, "epochs": measurement.epochs,
            "wall_s": measurement.wall_s, "told_once": measurement.told_once,
            "p99_ms_last_window": p99_ms(calls),
            "p99_ms_last_window_by_kind": {kind: p99_ms([call for call in calls if call.kind == kind])
                                           for kind in KINDS if any(call.kind == kind for call in calls)},
            "rung_save_ms": measurement.rung_save_ms, **capacity(measurement, window)}


def plot(rows: list[Window], path: Path, title: str) -> Path:
    """p50 (dashed) and p99 (solid) per window, one panel per kind, one colour per run."""
    import plotly.graph_objects as go
    from plotly.express.colors import qualitative
    from plotly.subplots import make_subplots

    runs = list(dict.fromkeys(row.run for row in rows))
    figure = make_subplots(rows=len(KINDS), cols=1, shared_xaxes=True, subplot_titles=KINDS)
    for panel, kind in enumerate(KINDS, start=1):
        for run, colour in zip(runs, qualitative.Plotly):
            mine = [row for row in rows if row.kind == kind and row.run == run]
            for stat, dash in (("p50_ms", "dash"), ("p99_ms", "solid")):
                figure.add_trace(go.Scatter(
                    x=[row.last for row in mine], y=[getattr(row, stat) for row in mine], mode="lines+markers",
                    name=f"{run} {stat[:3]}", legendgroup=f"{run} {stat}", showlegend=panel == 1,
                    line={"color": colour, "dash": dash}), row=panel, col=1)
        figure.update_yaxes(title_text="ms", type="log", row=panel, col=1)
    figure.update_xaxes(title_text="trials in the study (end of window)", row=len(KINDS), col=1)
    figure.update_layout(title=title, height=300 * len(KINDS))
    figure.write_html(path, include_plotlyjs=True)
    return path


def fsync_ms(directory: Path, repeats: int = 50) -> float:
    """Median fsync of a small append where the studies live: the floor of every durable write."""
    times = []
    with open(directory / "fsync.probe", "ab") as file:
        for _ in range(repeats):
            file.write(b"x\n")
            file.flush()
            start = time.perf_counter()
            os.fsync(file.fileno())
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def run_workload(workload: Workload, space: SearchSpace, table: Table) -> tuple[Measurement, dict]:
    space = space.with_overrides(samples=workload.trials, seed=0, sampler=workload.sampler)
    log(f"decision_latency: {workload.label}, {workload.trials} trials on {WORKERS} workers")
    with tempfile.TemporaryDirectory() as tmp:
        measurement = measure(space, table, WORKERS, workload.storage, Path(tmp))
    log(f"decision_latency: {workload.label}: {measurement.wall_s:.0f} s")
    return measurement, summary(measurement)


def run(quick: bool = False, threads: int | None = None) -> Row:
    workloads = WORKLOADS[quick]
    with tempfile.TemporaryDirectory() as tmp:
        space, table = benchmark_table(Path(tmp))
        fsync = fsync_ms(Path(tmp))
    measured = [run_workload(workload, space, table) for workload in workloads]
    (ours_run, ours_summary), (long, long_summary), (sqlite, sqlite_summary) = measured
    rows = [row for measurement, _ in measured for row in windows(measurement)]
    ours, baseline = ours_summary["p99_ms_last_window"], sqlite_summary["p99_ms_last_window"]
    same_trials = p99_ms([call for call in long.log.calls if call.trials <= sqlite.log.asked])
    synthetic = " (SYNTHETIC)" if table.meta.get("recorded", {}).get("synthetic") else ""
    table_name = Path(str(table.source)).name
    configs = len(list(space.grid_configs()))
    title = f"Decision latency, {space.source} on table {table_name}{synthetic}, {WORKERS} simulated workers"
    out = Path(os.environ.get("WRN_BENCH_OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    path = plot(rows, out / "decision_latency.html", title)
    by_kind = ours_summary["p99_ms_last_window_by_kind"]
    busy = ours_summary["gpus_busy"]["epoch_10_s"]
    checks = {
        "every_trial_told_once": all(stats["told_once"] for _, stats in measured),
        "one_schedule_per_reported_epoch": all(m.log.count("schedule") == m.epochs for m, _ in measured),
        "ours_ran_all_its_trials": ours_run.log.asked == workloads[0].trials,
        f"suggest_p99_under_{SUGGEST_P99_LIMIT_MS:g}_ms_at_last_window": by_kind["suggest"] <= SUGGEST_P99_LIMIT_MS,
        f"result_p99_under_{RESULT_P99_LIMIT_MS:g}_ms_at_last_window": by_kind["schedule"] <= RESULT_P99_LIMIT_MS,
        f"at_least_{GPUS_AT_10_S_TARGET}_gpus_at_10_s_epochs": busy >= GPUS_AT_10_S_TARGET,
    }
    workload = (f"{'QUICK MODE: smaller studies, ' if quick else ''}{space.source} (MO-ASHA, {configs:,} "
                f"configurations) on table {table_name}{synthetic}, {WORKERS} simulated workers; runs "
                "(storage/sampler, trials): " + ", ".join(f"{w.label} {w.trials:,}" for w in workloads)
                + f"; ours: the default search {ours_run.label}, p99 of suggest+tell+schedule in its last "
                f"{WINDOW:,}-trial window at {ours_run.log.asked:,} trials (suggest {by_kind['suggest']:.1f} ms, "
                f"tell {by_kind.get('tell', float('nan')):.1f} ms, reported result {by_kind['schedule']:.1f} ms), "
                f"{ours_summary['decisions_per_second']:.0f} decisions/s, "
                f"{ours_summary['driver_ms_per_epoch']:.1f} ms of driver per epoch: one driver keeps {busy:.0f} GPUs "
                f"busy at 10 s epochs ({ours_summary['gpus_busy_with_rung_saves']['epoch_10_s']:.0f} with "
                f"scheduler.jsonl appends), {ours_summary['wall_s']:.0f} s; baseline: the same of {sqlite.label} "
                f"{sqlite.log.asked:,} (a smaller study; over its {sqlite.log.asked:,} trials {long.label}'s p99 is "
                f"{same_trials:.1f} ms); {long.label} at {long.log.asked:,} trials p99 "
                f"{long_summary['p99_ms_last_window']:.1f} ms, {long_summary['gpus_busy']['epoch_10_s']:.0f} GPUs at "
                f"10 s epochs; fsync {fsync:.2f} ms")
    details = {"window": WINDOW, "workers": WORKERS, "configurations": configs, "fsync_ms": fsync,
               "plot": str(path.resolve()), "runs": [stats for _, stats in measured],
               "like_for_like": {"trials": sqlite.log.asked, "journal_p99_ms": same_trials, "sqlite_p99_ms": baseline,
                                 "ratio": speedup(same_trials, baseline, False)},
               "windows": [asdict(row) for row in rows]}
    return Row("decision_latency", ours, baseline, "ms p99/decision, default (TPE, journal) vs SQLite random",
               speedup(ours, baseline, False), f"{describe_device(torch.device('cpu'), 1)}; simulated, no Ray",
               workload, checks, details)
