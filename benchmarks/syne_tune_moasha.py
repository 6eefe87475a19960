"""Syne Tune's MOASHA in the simulator: its own scheduler deciding, its config space sampled, our clock.

Syne Tune's MOASHA is random search plus its multi-objective successive halving; here it searches
the same grid as our space (every feasible architecture name x each hyperparameter's choices)
with the same rungs (``max_t`` = the full epochs, the space's grace period and reduction factor)
and the same objectives. :func:`syne_tune_moasha` returns the searcher and the scheduler that
:class:`~wrn_search.simulation.simulate.Simulation` drives, sharing one ``MOASHA``.

Stock MOASHA ranks a rung with ``NonDominatedPriority``, which returns the *order* of the points
(an argsort) where the bracket expects each point's *rank*, so a new trial's stop decision
reads the position of whichever trial sorts last instead of its own standing. ``ranked=True``
swaps in :class:`RankPriority`, our patch of that bug, to show what MOASHA does when it works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from syne_tune.backend.trial_status import Trial
from syne_tune.config_space import choice
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import NonDominatedPriority
from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import nondominated_sort

from wrn_search.network.spec import WRNSpec
from wrn_search.records import FAILED_OUTCOMES
from wrn_search.spaces.space import SearchSpace


class RankPriority(NonDominatedPriority):
    """Syne Tune's non-dominated sort, returned as each point's rank (lower is better), as the bracket expects."""

    def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
        order = nondominated_sort(X=objectives, dim=self.dim)
        ranks = np.empty(len(order), dtype=int)
        ranks[order] = np.arange(len(order))
        return ranks


class MOASHASearcher:
    """Draws every config uniformly from the grid with a seeded generator and tells MOASHA about the trial.

    MOASHA's own ``suggest`` draws from the global ``np.random``; a private ``RandomState``
    draws the same distribution without depending on what else ran in the process.
    """

    def __init__(self, space: SearchSpace, moasha: MOASHA, trials: dict[str, Trial], seed: int):
        self.space = space
        self.moasha = moasha
        self.trials = trials
        self.full_epochs = space.training.epochs
        self.random = np.random.RandomState(seed)
        self.now: Callable[[], float] = time.time

    def suggest(self, trial_id: str) -> dict:
        values = {name: domain.sample(random_state=self.random) for name, domain in self.moasha.config_space.items()}
        number = len(self.trials)
        config = {**self.space.config(WRNSpec.parse(values.pop("architecture")), values), "number": number}
        trial = Trial(number, config, datetime.fromtimestamp(self.now()))
        self.moasha.on_trial_add(trial)
        self.trials[trial_id] = trial
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Random search learns nothing from results."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Random search learns nothing from results."""

    def classify(self, result: dict | None, error: bool) -> tuple[TrialState, str]:
        """COMPLETE at the full epochs, PRUNED before, FAIL for a diverged or out-of-memory curve (as ours)."""
        if error or not result:
            return TrialState.FAIL, "error"
        outcome = result.get("outcome", "completed")
        if outcome in FAILED_OUTCOMES:
            return TrialState.FAIL, outcome
        if int(result.get("epoch", 0)) < self.full_epochs:
            return TrialState.PRUNED, "stopped_early"
        return TrialState.COMPLETE, "completed"


class MOASHAScheduler:
    """Forwards each result to MOASHA and its decision back; removes a stopped trial as Syne Tune's tuner does."""

    def __init__(self, moasha: MOASHA, trials: dict[str, Trial]):
        self.moasha = moasha
        self.trials = trials

    def on_trial_result(self, controller, trial, result: dict) -> str:
        mine = self.trials[trial.trial_id]
        if self.moasha.on_trial_result(mine, result) == SchedulerDecision.STOP:
            self.moasha.on_trial_remove(mine)  # MOASHA says STOP at max_t too: every trial leaves here or below
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, controller, trial, result: dict) -> None:
        """A trial that ended without a STOP (diverged, or cut by the time budget) leaves MOASHA here."""
        mine = self.trials[trial.trial_id]
        if mine.trial_id not in self.moasha.trial_info:
            return
        if all(key in result for key in (self.moasha.time_attr, *self.moasha.metrics)):
            self.moasha.on_trial_complete(mine, result)
        else:
            self.moasha.on_trial_remove(mine)


def syne_tune_moasha(space: SearchSpace, seed: int, ranked: bool = False) -> tuple[MOASHASearcher, MOASHAScheduler]:
    """The searcher and scheduler of one simulation: MOASHA with our space's grid, rungs and objectives."""
    epochs = space.training.epochs
    search = space.search
    moasha = MOASHA(
        {name: choice(values) for name, values in space.grid_axes().items()},
        metrics=list(search.objectives), do_minimize=True, time_attr="training_iteration",
        multiobjective_priority=RankPriority() if ranked else None, max_t=epochs,
        grace_period=min(search.grace_period, epochs), reduction_factor=search.reduction_factor, brackets=1,
        random_seed=seed,
    )
    trials: dict[str, Trial] = {}
    return MOASHASearcher(space, moasha, trials, seed), MOASHAScheduler(moasha, trials)
