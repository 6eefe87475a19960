"""Decision latency: the driver's seconds per decision as the study grows, simulated (how many GPUs one driver feeds).

A Ray Tune driver makes every search decision on one thread while the workers wait:
``suggest`` a config (the sampler over the study, then the trial's attributes written to
the storage), ``tell`` a finished trial (``StudySearcher.on_trial_complete``: the study's
tell and the fsynced ``trials.jsonl`` line) and ``schedule`` each reported epoch
(``SuccessiveHalving.on_trial_result``: Pareto ranks of the rung). The simulator
(:mod:`wrn_search.simulate`) makes exactly those calls, in Tune's order, on ``WORKERS``
simulated GPUs without training anything, so timing them there times the driver alone.
Each kind is reported as p50/p99 per ``WINDOW`` trials of the study's size.

The workloads are cut to what 2 CPU cores run in about 10 minutes, and each says so:
10,000 trials only with the journal file and the random sampler. TPE's suggest grows
linearly with the study (by its growth over 2,000 trials, 10,000 would take about 15
minutes) and SQLite's re-reads every running trial on each ask (Optuna caches only
finished ones: about 0.2 s per suggest at 256 running), so both run fewer. The row compares the journal's p99 at its last window with SQLite's at
its own (a smaller study, so the ratio understates the journal's lead);
``like_for_like`` compares the two over SQLite's trials.

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

from wrn_search.rundir import open_storage
from wrn_search.schedulers import SuccessiveHalving
from wrn_search.search import make_scheduler
from wrn_search.searcher import StudySearcher
from wrn_search.simulate import Simulation, check_simulable, table_seed
from wrn_search.space import SearchSpace, load_space
from wrn_search.table import Table, load_table

from .common import Row, describe_device, log, speedup

SPACE = "digits-wrn"
#: The table replayed; ``WRN_BENCH_TABLE`` names another (a shipped table's name or a .csv.gz path).
TABLE = "digits-wrn"
WORKERS = 256
WINDOW = 1000
KINDS = ("suggest", "tell", "schedule")
#: Epoch lengths (seconds) for which the GPUs one driver keeps busy are reported.
EPOCH_SECONDS = (1.0, 10.0, 60.0)
P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Workload:
    storage: str  # "journal" or "sqlite"
    sampler: str
    trials: int

    @property
    def label(self) -> str:
        return f"{self.storage}/{self.sampler}"


#: Per mode: the long run (ours, 10,000 trials in full), TPE's growth, and the SQLite baseline.
WORKLOADS = {
    False: (Workload("journal", "random", 10_000), Workload("journal", "tpe", 2_000),
            Workload("sqlite", "random", 1_000)),
    True: (Workload("journal", "random", 2_000), Workload("journal", "tpe", 500), Workload("sqlite", "random", 300)),
}


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
    def clock(self) -> Callable[[], float]:
        return self.searcher.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:  # the simulation sets its simulated clock
        self.searcher.clock = clock

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
                            TimedScheduler(make_scheduler(space, None) or FIFOScheduler(), calls),
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
    """What the row keeps of one run: its size and wall time, the last window's p99 and the driver's capacity."""
    return {"run": measurement.label, "trials": measurement.log.asked, "epochs": measurement.epochs,
            "wall_s": measurement.wall_s, "told_once": measurement.told_once,
            "p99_ms_last_window": p99_ms(last_window(measurement, window)),
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


def run_workload(workload: Workload, table: Table) -> tuple[Measurement, dict]:
    space = load_space(SPACE).with_overrides(samples=workload.trials, seed=0, sampler=workload.sampler)
    log(f"decision_latency: {workload.label}, {workload.trials} trials on {WORKERS} workers")
    with tempfile.TemporaryDirectory() as tmp:
        measurement = measure(space, table, WORKERS, workload.storage, Path(tmp))
    log(f"decision_latency: {workload.label}: {measurement.wall_s:.0f} s")
    return measurement, summary(measurement)


def run(quick: bool = False, threads: int | None = None) -> Row:
    table = load_table(os.environ.get("WRN_BENCH_TABLE", TABLE))
    workloads = WORKLOADS[quick]
    measured = [run_workload(workload, table) for workload in workloads]
    (long, long_summary), (_, tpe_summary), (sqlite, sqlite_summary) = measured
    rows = [row for measurement, _ in measured for row in windows(measurement)]
    with tempfile.TemporaryDirectory() as tmp:
        fsync = fsync_ms(Path(tmp))
    ours, baseline = long_summary["p99_ms_last_window"], sqlite_summary["p99_ms_last_window"]
    same_trials = p99_ms([call for call in long.log.calls if call.trials <= sqlite.log.asked])
    synthetic = " (SYNTHETIC)" if table.meta.get("recorded", {}).get("synthetic") else ""
    title = f"Decision latency, {SPACE} on table {table.source}{synthetic}, {WORKERS} simulated workers"
    out = Path(os.environ.get("WRN_BENCH_OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    path = plot(rows, out / "decision_latency.html", title)
    checks = {
        "every_trial_told_once": all(stats["told_once"] for _, stats in measured),
        "one_schedule_per_reported_epoch": all(m.log.count("schedule") == m.epochs for m, _ in measured),
        f"p99_under_{P99_LIMIT_MS:g}_ms_at_last_window": ours < P99_LIMIT_MS,
    }
    busy = long_summary["gpus_busy"]["epoch_10_s"]
    workload = (f"{'QUICK MODE: smaller studies, ' if quick else ''}{SPACE} (MO-ASHA) on table {table.source}"
                f"{synthetic}, {WORKERS} simulated workers; runs (storage/sampler, trials): "
                + ", ".join(f"{w.label} {w.trials:,}" for w in workloads)
                + f"; ours: p99 of suggest+tell+schedule in the last {WINDOW:,}-trial window of "
                f"{long.label} {long.log.asked:,}; baseline: the same of {sqlite.label} {sqlite.log.asked:,} "
                f"(a smaller study; over its {sqlite.log.asked:,} trials the journal's p99 is {same_trials:.1f} ms); "
                f"at {long.log.asked:,} trials {long_summary['decisions_per_second']:.0f} decisions/s, "
                f"{long_summary['driver_ms_per_epoch']:.1f} ms of driver per epoch: one driver keeps {busy:.0f} GPUs "
                f"busy at 10 s epochs ({long_summary['gpus_busy_with_rung_saves']['epoch_10_s']:.0f} with "
                f"scheduler.jsonl appends); {tpe_summary['run']} p99 at {tpe_summary['trials']:,} trials "
                f"{tpe_summary['p99_ms_last_window']:.1f} ms; fsync {fsync:.2f} ms")
    details = {"window": WINDOW, "workers": WORKERS, "fsync_ms": fsync, "plot": str(path.resolve()),
               "runs": [stats for _, stats in measured],
               "like_for_like": {"trials": sqlite.log.asked, "journal_p99_ms": same_trials, "sqlite_p99_ms": baseline,
                                 "ratio": speedup(same_trials, baseline, False)},
               "windows": [asdict(row) for row in rows]}
    return Row("decision_latency", ours, baseline, "ms p99/decision, journal vs SQLite", speedup(ours, baseline, False),
               f"{describe_device(torch.device('cpu'), 1)}; simulated, no Ray", workload, checks, details)
