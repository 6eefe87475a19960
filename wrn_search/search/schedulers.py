"""Early stopping: asynchronous successive halving, by error (ASHA) or by Pareto rank (MO-ASHA).

Plain ASHA ranks trials by error alone, so it stops the small networks that form
the low-parameter end of a Pareto front. :class:`SuccessiveHalving` with the
objectives (error, params) promotes by non-dominated rank among the trials that
reached the rung, breaking ties by crowding distance, so a small net with a worse
error survives as long as no bigger net beats it on both.

Rungs sit at ``grace_period * reduction_factor**i`` epochs below the full budget.
Every trial trains with the learning-rate schedule of its *full* budget, so two
trials compared at a rung have seen the same schedule up to that epoch.

Ray does not save scheduler state (ray-project/ray#30838): every rung decision is
appended (fsynced) to ``scheduler.jsonl`` in the run directory and the log is
replayed when a resumed search first uses the scheduler. One line per decision
keeps the cost per decision constant; rewriting every rung took 52 ms a decision
at 10,000 trials (benchmarks/README.md, ``decision_latency``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, HyperBandScheduler, MedianStoppingRule, TrialScheduler

from wrn_search.pareto import Point, promotion_position
from wrn_search.runs.files import append_jsonl, read_jsonl
from wrn_search.runs.layout import SCHEDULER_LOG
from wrn_search.runs.logs import SCHEDULER_SCHEMA
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.recipe import START_EPOCH


def promotes(candidate: int, points: Sequence[Point], reduction_factor: float) -> bool:
    """Whether ``points[candidate]`` is in the best ``ceil(n / reduction_factor)`` of the rung.

    :func:`promotion_order` is strict, so ties never widen the promoted fraction, and a rung
    with a single trial always promotes it. With one objective the order is the plain order
    of errors, which is ASHA's rule. As in every stopping-based ASHA (Ray's, Syne Tune's),
    a trial is judged when it arrives, so in a search whose later trials beat earlier ones
    more than 1/rf of a rung can continue in the end; a hard cap at ceil(n/rf) would stop
    those better late trials, and on the simulated benchmark it made the default search
    reach random search's front 40% later (docs/simulation.md).
    """
    return promotion_position(points, candidate) < max(1, math.ceil(len(points) / reduction_factor))


def rung_milestones(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Epochs at which trials are compared: grace * rf**i, rounded up, while a trial promoted there still
    trains at least rf times as long in all (rung * rf <= max_t). A rung closer to the end would stop
    trials that have nearly finished: with 10 epochs, rf 3, a rung at 9 saved one epoch per stopped
    trial and threw away trials trained 90% of the way."""
    milestones = []
    epoch = float(grace_period)
    while math.ceil(epoch) * reduction_factor <= max_t:
        milestones.append(math.ceil(epoch))
        epoch *= reduction_factor
    return sorted(set(milestones))


class SuccessiveHalving(FIFOScheduler):
    """Asynchronous successive halving over epochs (the trial's own ``epoch``), one bracket.

    ``objectives`` are minimised result keys: ``["val_error"]`` gives ASHA,
    ``["val_error", "params"]`` gives MO-ASHA (promotion by non-dominated rank, then crowding distance).
    """

    def __init__(
        self,
        objectives: Sequence[str],
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        log_path: str | Path | None = None,
        time_attr: str = "epoch",
    ):
        super().__init__()
        if grace_period < 1 or grace_period > max_t:
            raise ValueError(f"grace_period: must be in [1, {max_t}] (the epochs), got {grace_period}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor: must be > 1, got {reduction_factor}")
        self.objectives = list(objectives)
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        self.time_attr = time_attr
        self.milestones = rung_milestones(max_t, grace_period, reduction_factor)
        self.log_path = str(log_path) if log_path else None
        self._rungs: dict[str, dict[str, list[float]]] | None = None
        self._stopped: dict[str, list[str]] = {}

    # Ray asks schedulers to adopt the TuneConfig metric; ours carries its own objectives.
    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _load(self) -> None:
        """Start the rungs empty, or from the decision log when a resumed search first uses them.

        A bad line (torn, hand-edited, of other objectives) is skipped, as every log reader does: one
        decision lost means that trial is judged again at that rung, never a resume that cannot start.
        """
        if self._rungs is not None:
            return
        self._rungs = {str(m): {} for m in self.milestones}
        self._stopped = {str(m): [] for m in self.milestones}
        for record in read_jsonl(Path(self.log_path), SCHEDULER_SCHEMA) if self.log_path else ():
            if len(record["values"]) != len(self.objectives):
                continue
            milestone, trial_id = str(record["milestone"]), record["trial_id"]
            self._rungs.setdefault(milestone, {})[trial_id] = record["values"]
            if record["stopped"]:
                self._stopped.setdefault(milestone, []).append(trial_id)

    @property
    def rungs(self) -> dict[str, dict[str, list[float]]]:
        """Milestone (as str, for JSON) -> trial id -> objective values recorded there."""
        self._load()
        return self._rungs

    @property
    def stopped(self) -> dict[str, list[str]]:
        """Milestone -> trial ids stopped there; a trial asked about again gets the same answer."""
        self._load()
        return self._stopped

    @property
    def num_stopped(self) -> int:
        return sum(len(ids) for ids in self.stopped.values())

    def record(self, milestone: int, trial_id: str, values: list[float], stopped: bool) -> None:
        """Append one rung decision to the log, fsynced (a kill loses at most the decision being written)."""
        if self.log_path:
            append_jsonl(Path(self.log_path), {"milestone": milestone, "trial_id": trial_id, "values": values,
                                               "stopped": stopped})

    def add(self, milestone: int, trial_id: str, values: list[float], stopped: bool) -> None:
        """Record a decision this search did not make (a trial reused from an earlier run, :mod:`.warmstart`):
        in the log, and in the rungs where they are loaded already or live in memory only (else the log is
        replayed into them at their first use)."""
        self.record(milestone, trial_id, list(values), stopped)
        if self._rungs is not None or not self.log_path:
            self.rungs.setdefault(str(milestone), {})[trial_id] = list(values)
            if stopped:
                self.stopped.setdefault(str(milestone), []).append(trial_id)

    def decide(self, trial_id: str, iteration: float, values: Point, start: int = 0) -> str:
        """Record ``values`` at the rung ``iteration`` reached first and say CONTINUE or STOP.

        A trial that continues one stopped early at epoch ``start`` is judged from the next rung
        on: being asked for again is its promotion past the rungs it had reached.
        """
        if iteration >= self.max_t:
            return TrialScheduler.CONTINUE  # the trainable ends by itself at its full budget
        for milestone in reversed(self.milestones):
            recorded = self.rungs[str(milestone)]
            if iteration < milestone or milestone <= start:
                continue
            stopped = self.stopped[str(milestone)]
            if trial_id in recorded:  # decided at this rung already, e.g. before a driver kill
                return TrialScheduler.STOP if trial_id in stopped else TrialScheduler.CONTINUE
            recorded[trial_id] = list(values)
            keep = promotes(len(recorded) - 1, list(map(tuple, recorded.values())), self.reduction_factor)
            if not keep:
                stopped.append(trial_id)
            self.record(milestone, trial_id, list(values), not keep)
            return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.time_attr not in result or any(result.get(key) is None for key in self.objectives):
            return TrialScheduler.CONTINUE
        values = tuple(float(result[key]) for key in self.objectives)
        return self.decide(trial.trial_id, result[self.time_attr], values, int(trial.config.get(START_EPOCH, 0)))

    def debug_string(self) -> str:
        name = "MO-ASHA" if len(self.objectives) > 1 else "ASHA"
        counts = ", ".join(f"epoch {m}: {len(self.rungs[str(m)])}" for m in self.milestones)
        return f"Using {name} ({'/'.join(self.objectives)}): stopped {self.num_stopped}; rungs {counts}"


def _successive_halving(space: SearchSpace, run_dir: Path | None) -> SuccessiveHalving:
    search = space.search
    objectives = list(search.objectives) if search.scheduler == "moasha" else ["val_error"]
    return SuccessiveHalving(objectives, space.training.epochs, min(search.grace_period, space.training.epochs),
                             search.reduction_factor, run_dir / SCHEDULER_LOG if run_dir else None)


def _hyperband(space: SearchSpace, run_dir: Path | None) -> HyperBandScheduler:
    return HyperBandScheduler(time_attr="epoch", metric="val_error", mode="min", max_t=space.training.epochs,
                              reduction_factor=space.search.reduction_factor)


def _median(space: SearchSpace, run_dir: Path | None) -> MedianStoppingRule:
    return MedianStoppingRule(time_attr="epoch", metric="val_error", mode="min",
                              grace_period=space.search.grace_period)


#: ``search.scheduler`` -> its builder, given the space and the run directory that keeps its rungs (None: in
#: memory); asha and moasha save their rungs in ``scheduler.jsonl``. Its keys are the schema's SCHEDULERS.
SCHEDULER_BUILDERS: dict[str, Callable[[SearchSpace, Path | None], TrialScheduler | None]] = {
    "moasha": _successive_halving,
    "asha": _successive_halving,
    "hyperband": _hyperband,
    "median": _median,
    "none": lambda space, run_dir: None,
}


def create_scheduler(space: SearchSpace, run_dir: Path | None) -> TrialScheduler | None:
    """The space's early stopping (None: every trial trains all its epochs)."""
    return SCHEDULER_BUILDERS[space.search.scheduler](space, run_dir)

