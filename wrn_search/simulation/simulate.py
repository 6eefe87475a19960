"""Simulated searches: the real searcher and scheduler, replaying a benchmark table on a discrete-event clock.

Syne Tune's simulator backend and the NAS-Bench tables, for WRNs and with this project's own
:class:`~wrn_search.search.searcher.StudySearcher` and schedulers in the loop: ``workers`` asynchronous
workers each train one trial at a time; a trial's epochs take the recorded epoch seconds and
report the recorded metrics of one table seed (picked by the simulation's seed). Every call the
searcher and the scheduler get is the one Tune would make, in Tune's order (the scheduler
decides on a result first; a stopped trial's last result goes to ``on_trial_complete``). No Ray
processes, no sleeping: 1,000 trials take seconds, and a seed gives the same study every time.

The run directory is a normal one (study, ``epochs.jsonl`` and ``trials.jsonl`` with simulated
times counted from the run's creation, results, front, report), so ``status``, ``pareto``,
``report`` and ``dashboard`` read it; ``resume`` refuses it (simulate again instead).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from wrn_search.checks import require_int, require_number
from wrn_search.records import FAILED_OUTCOMES
from wrn_search.runs.files import write_atomic, write_jsonl
from wrn_search.runs.layout import EPOCH_LOG, SIMULATION_FILE, STUDY_JOURNAL, init_run_dir, run_dir_for
from wrn_search.runs.logs import epoch_record
from wrn_search.runs.results import ResultsHook, RunResults, write_results
from wrn_search.runs.storage import open_storage
from wrn_search.search.quiet import quiet_optuna
from wrn_search.search.samplers import make_sampler
from wrn_search.search.schedulers import create_scheduler
from wrn_search.search.searcher import EXHAUSTED, StudySearcher
from wrn_search.search.warmstart import WarmStart
from wrn_search.simulation.table import Curve, Table
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.recipe import START_EPOCH

#: Schedulers the simulator runs: ours continue or stop; Ray's hyperband and median also pause trials.
SIMULATED_SCHEDULERS = ("moasha", "asha", "none")


@dataclass
class SimulatedTrial:
    """What the scheduler sees of a trial (``trial_id``) and what the simulator needs to replay it."""

    trial_id: str
    config: dict
    curve: Curve
    started: float
    epoch: int = 0
    last_result: dict | None = None


@dataclass(frozen=True)
class FinishedTrial:
    """One trial as the study was told it, at simulated time ``finished``."""

    number: int
    name: str
    params: int
    macs: int
    state: str
    val_error: float | None
    epochs: int
    started: float
    finished: float
    #: The epoch a trial continuing one stopped early started from: it trained ``epochs - start_epoch``.
    start_epoch: int = 0

    @property
    def trained_epochs(self) -> int:
        return self.epochs - self.start_epoch


@dataclass
class Simulation:
    """The event loop; ``run`` drives ``searcher`` and ``scheduler`` until the budgets end.

    ``time_budget`` (simulated seconds) ends the search at that moment exactly: trials still
    running then are told as stopped early with what they had reported.
    """

    searcher: StudySearcher
    scheduler: TrialScheduler
    table: Table
    table_seed: int
    workers: int
    time_budget: float | None = None
    #: Called with every epoch record; the run directory's epoch log.
    on_epoch: Callable[[dict], None] | None = None
    #: Unix time of simulated second 0, for the times in the logs.
    origin: float = 0.0
    clock: float = 0.0
    finished: list[FinishedTrial] = field(default_factory=list)
    _events: list = field(default_factory=list)
    _running: dict[str, SimulatedTrial] = field(default_factory=dict)
    _asked: int = 0
    _sequence: Iterator[int] = field(default_factory=itertools.count)
    _exhausted: bool = False

    def run(self) -> list[FinishedTrial]:
        self.searcher.now = lambda: self.origin + self.clock
        self._fill()
        while self._events:
            time, _, trial_id = heapq.heappop(self._events)
            if self.time_budget is not None and time > self.time_budget:
                self.clock = self.time_budget
                break
            self.clock = time
            self._epoch_done(self._running[trial_id])
            self._fill()
        for trial in list(self._running.values()):  # cut by the time budget
            self._complete(trial, trial.last_result or {"epoch": 0, "training_iteration": 0})
        return self.finished

    def _fill(self) -> None:
        """Start trials while a worker is free and the searcher has more to ask."""
        while not self._exhausted and len(self._running) < self.workers:
            trial_id = f"sim_{self._asked:05d}"
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                self._exhausted = True
                return
            self._asked += 1
            # A trial that continues one stopped early replays its curve from there: only those epochs cost time.
            trial = SimulatedTrial(trial_id, config, self.table.curve(config, self.table_seed), self.clock,
                                   epoch=int(config.get(START_EPOCH, 0)))
            self._running[trial_id] = trial
            self._schedule(trial)

    def _schedule(self, trial: SimulatedTrial) -> None:
        seconds = float(trial.curve.epoch_seconds[trial.epoch])
        heapq.heappush(self._events, (self.clock + seconds, next(self._sequence), trial.trial_id))

    def _epoch_done(self, trial: SimulatedTrial) -> None:
        curve, index = trial.curve, trial.epoch
        trial.epoch += 1
        result = {
            "epoch": trial.epoch, "training_iteration": trial.epoch, "val_error": float(curve.val_error[index]),
            "train_loss": _number(curve.train_loss[index]), "val_loss": _number(curve.val_loss[index]),
            "epoch_seconds": float(curve.epoch_seconds[index]), "params": trial.config["params"],
            "macs": trial.config["macs"], "outcome": curve.outcome[index],
            "time_total_s": self.clock - trial.started,
        }
        trial.last_result = result
        if self.on_epoch is not None:
            self.on_epoch(epoch_record(trial.trial_id, trial.config, result, {"CPU": 1, "GPU": 0},
                                       self.origin + self.clock))
        decision = self.scheduler.on_trial_result(None, trial, result)
        if decision == TrialScheduler.PAUSE:
            raise ValueError("scheduler: paused a trial; the simulator runs schedulers that continue or stop "
                             f"({', '.join(SIMULATED_SCHEDULERS)})")
        ended = trial.epoch >= len(curve) or result["outcome"] in FAILED_OUTCOMES
        if decision == TrialScheduler.STOP or ended:
            self._complete(trial, result)
        else:
            self.searcher.on_trial_result(trial.trial_id, result)
            self._schedule(trial)

    def _complete(self, trial: SimulatedTrial, result: dict) -> None:
        del self._running[trial.trial_id]
        self.scheduler.on_trial_complete(None, trial, result)
        self.searcher.on_trial_complete(trial.trial_id, result)
        state, _ = self.searcher.classify(result, False)
        self.finished.append(FinishedTrial(
            trial.config["number"], trial.config["name"], trial.config["params"], trial.config["macs"], state.name,
            result.get("val_error"), int(result.get("epoch", 0)), trial.started, self.clock,
            int(trial.config.get(START_EPOCH, 0))))


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def check_simulable(space: SearchSpace, table: Table) -> None:
    """A scheduler the simulator runs, and a space whose every grid point the table holds."""
    if space.search.scheduler not in SIMULATED_SCHEDULERS:
        raise ValueError(f"search.scheduler: {space.search.scheduler!r} is Ray's own and pauses trials, which the "
                         f"simulator does not model; simulate one of {', '.join(SIMULATED_SCHEDULERS)}")
    table.check_covers(space)


def table_seed(table: Table, seed: int) -> int:
    """The recorded seed a simulation with ``seed`` replays."""
    return table.seeds[seed % len(table.seeds)]


def replay(space: SearchSpace, table: Table, workers: int, run_dir: Path, study_name: str,
           time_budget: float | None = None, storage: optuna.storages.BaseStorage | None = None,
           on_epoch: Callable[[dict], None] | None = None, origin: float = 0.0,
           warm_start: WarmStart | None = None) -> Simulation:
    """Run the space's own searcher and scheduler over ``table`` and return the finished simulation.

    The study is created in ``storage`` (default: in memory); the searcher's trial log goes
    to ``run_dir``; the scheduler keeps its rungs in memory (a simulation is never resumed).
    ``warm_start``'s trials enter the study and the rungs before the first ask.
    """
    check_simulable(space, table)
    storage = storage or optuna.storages.InMemoryStorage()
    scheduler = create_scheduler(space, None) or FIFOScheduler()
    if warm_start is not None:
        study = optuna.create_study(study_name=study_name, storage=storage,
                                    directions=["minimize"] * len(space.search.objectives))
        warm_start.apply(study, scheduler)
    searcher = StudySearcher(space, run_dir, study_name, "", space.trial_budget(), storage=storage)
    simulation = Simulation(searcher, scheduler, table,
                            table_seed(table, space.search.seed), workers, time_budget, on_epoch, origin)
    simulation.run()
    return simulation


def simulate(space: SearchSpace, table: Table, workers: int, time_budget: float | None = None,
             name: str | None = None, storage_path: str = "wrn-runs", study_storage: str | None = None,
             argv: list[str] | None = None, warm_start: Sequence[str | Path] = (),
             on_results: ResultsHook | None = None) -> RunResults:
    """Run a simulated search into a new run directory and return its results (as :func:`run_search` does);
    bad input raises ``ValueError`` first. ``warm_start`` names earlier simulated runs of the same table whose
    trials that fit the space enter the study as already evaluated (:mod:`wrn_search.search.warmstart`).

    Like a real run it ends with ``results.csv`` and ``pareto.csv``, then calls ``on_results``. The study lives in
    memory while the clock runs and is copied to ``study_storage`` at the end
    (default: the run's ``study.log``, Optuna's journal file, which takes 1,000 trials in a second
    where SQLite's one transaction per trial takes a minute), so no call waits for a commit.
    """
    check_simulable(space, table)
    require_int(workers, "workers", 1)
    if time_budget is not None:
        require_number(time_budget, "time_budget", 0, open_low=True)
    with quiet_optuna():
        make_sampler(space)  # fails now if the sampler cannot be built
    if study_storage is not None:
        open_storage(study_storage)
    if "://" in storage_path:
        raise ValueError(f"storage_path: {storage_path!r}: a simulated run is written to a local directory")
    name = name or f"{Path(str(space.source)).stem}-sim-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, _ = run_dir_for(name, storage_path)
    if run_dir.exists():
        raise FileExistsError(f"run directory {run_dir} exists; choose another --name")
    warm = WarmStart.plan(space, warm_start, run_dir, table=table.source) if warm_start else None
    run_dir.mkdir(parents=True)
    if warm is not None:
        warm.say()
    with quiet_optuna():  # the sampler options wrn-search chose are not news to the user
        try:
            manifest = init_run_dir(space, run_dir, name, None, study_storage or str(run_dir / STUDY_JOURNAL), argv,
                                    table=table.source)
            epochs: list[dict] = []
            simulation = replay(space, table, workers, run_dir, manifest.study_name, time_budget,
                                on_epoch=epochs.append, origin=datetime.fromisoformat(manifest.created).timestamp(),
                                warm_start=warm)
            write_jsonl(run_dir / EPOCH_LOG, epochs)
            if simulation.searcher.exhausted:
                print(f"wrn-search: {EXHAUSTED}", file=sys.stderr, flush=True)
            optuna.copy_study(from_study_name=manifest.study_name,
                              from_storage=simulation.searcher.study._storage,
                              to_storage=open_storage(manifest.storage), to_study_name=manifest.study_name)
            write_atomic(run_dir / SIMULATION_FILE, json.dumps({
                "table": table.source, "table_seed": simulation.table_seed, "workers": workers,
                "time_budget": time_budget, "simulated_seconds": simulation.clock,
                "trials": len(simulation.finished)}, indent=1) + "\n")
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    results = RunResults.load(run_dir)
    write_results(results)
    if on_results is not None:
        on_results(results)
    return results
