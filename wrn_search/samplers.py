"""The Optuna samplers a space can name, and the two places where wrn-search changes what Optuna does.

- :class:`RungTPESampler`: Optuna forbids ``trial.report`` in multi-objective studies
  (optuna#3450), so a trial stopped early by MO-ASHA reaches the study as PRUNED with no
  intermediate values, and TPE's split puts every one of them in its "bad" group, tied: a
  trial stopped at epoch 9 with 2% error counts like one stopped at epoch 1 with 40%. The
  searcher records where each stopped trial was stopped (``epochs``) and its objectives
  there (``rung_values``); this TPE ranks every finished trial by the rung it reached, then
  by the scheduler's own order at that rung (non-dominated rank, crowding distance), and
  takes its "good" group from the top. PRUNED stays PRUNED: the trials are only ranked.
- :class:`AskTellGridSampler`: the grid without Optuna's ``study.stop()``.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import default_gamma, default_gamma_multiobjective
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .pareto import promotion_order
from .space import SearchSpace

#: The user attribute of a PRUNED trial with its objective values at the rung where it was stopped.
RUNG_VALUES = "rung_values"
#: TPE's start-up trials (Optuna's default count); the searcher spreads them over the params axis.
START_UP_TRIALS = 10


class AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` that does not stop the study after the last grid point.

    Optuna's calls ``study.stop()``, which is only legal inside ``study.optimize``:
    under Tune's ask-and-tell it raises on the last trial's tell, and Tune retries
    that trial. The searcher stops asking once the grid is exhausted instead.
    """

    def after_trial(self, study, trial, state, values) -> None:
        pass


def rung_order(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials best first: more epochs reached first, then :func:`promotion_order` among trials
    that reached the same epochs (COMPLETE ones at their final values, PRUNED ones at their rung)."""
    levels: dict[float, list[FrozenTrial]] = {}
    unranked = []
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            levels.setdefault(math.inf, []).append(trial)
        elif RUNG_VALUES in trial.user_attrs:
            levels.setdefault(float(trial.user_attrs.get("epochs", 0)), []).append(trial)
        else:
            unranked.append(trial)  # stopped before the searcher recorded rungs
    ordered = []
    for level in sorted(levels, reverse=True):
        members = levels[level]
        points = [tuple(t.values if level == math.inf else t.user_attrs[RUNG_VALUES]) for t in members]
        ordered.extend(members[i] for i in promotion_order(points))
    return ordered + unranked


class RungTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE with its good/bad split taken from :func:`rung_order` (see the module docstring)."""

    def _sample(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # Optuna's TPESampler._sample with the split replaced; Optuna has no hook for the split.
        states = [TrialState.COMPLETE, TrialState.PRUNED] + ([TrialState.RUNNING] if self._constant_liar else [])
        trials = [t for t in study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
                  if t.number != trial.number]
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        gamma = self._gamma or (default_gamma if len(study.directions) <= 1 else default_gamma_multiobjective)
        ordered = rung_order(finished)
        n_below = min(gamma(len(finished)), len(ordered))
        below = sorted(ordered[:n_below], key=lambda t: t.number)
        above = sorted(ordered[n_below:] + [t for t in trials if t.state == TrialState.RUNNING], key=lambda t: t.number)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        best = self._compare(samples_below, self._compute_acquisition_func(samples_below, mpe_below, mpe_above))
        return {name: distribution.to_external_repr(best[name]) for name, distribution in search_space.items()}


def make_sampler(space: SearchSpace, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``space.search.sampler``."""
    search = space.search
    seed = search.seed if seed is None else seed
    name = search.sampler
    if name == "tpe":
        return RungTPESampler(seed=seed, n_startup_trials=START_UP_TRIALS, multivariate=True, group=True,
                              constant_liar=True)
    if name == "nsga2":
        population = max(4, min(50, search.samples // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return AskTellGridSampler(space.grid_axes(), seed=seed)
    if name in ("gp", "qmc"):
        try:
            import scipy  # noqa: F401  (both samplers need it)
        except ImportError:
            raise ValueError(f"sampler: {name!r} needs scipy; install it with `pip install scipy`") from None
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.QMCSampler(seed=seed)
    raise AssertionError(f"space.py validates search.sampler; got {name!r}")
