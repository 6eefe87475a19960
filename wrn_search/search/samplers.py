"""The Optuna samplers a space can name, and the two places where wrn-search changes what Optuna does.

- :class:`RungTPESampler`: Optuna forbids ``trial.report`` in multi-objective studies
  (optuna#3450), so a trial stopped early by MO-ASHA reaches the study as PRUNED with no
  intermediate values, and TPE's split puts every one of them in its "bad" group, tied: a
  trial stopped at epoch 9 with 2% error counts like one stopped at epoch 1 with 40%. The
  searcher records where each stopped trial was stopped (``epochs``) and its objectives
  there (``rung_values``); this TPE ranks every finished trial by the rung it reached, then
  by the scheduler's own order at that rung (non-dominated rank, crowding distance), and
  takes its "good" group from the top. PRUNED stays PRUNED: the trials are only ranked.
- :class:`DistinctSampler`: any of them, never proposing a configuration the study has
  trained, is training or failed (a trial is seeded, so a repeat gives the same result); a
  proposal equal to a trial stopped early is allowed and continues it (the searcher sees to that).
- :class:`AskTellGridSampler`: the grid without Optuna's ``study.stop()``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_gamma_multiobjective
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace, _SearchSpaceGroup
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from wrn_search.errors import BadInput
from wrn_search.pareto import promotion_best, promotion_order
from wrn_search.spaces.schema import config_key
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.recipe import CONTINUES

#: The user attribute of a PRUNED trial with its objective values at the rung where it was stopped.
RUNG_VALUES = "rung_values"
#: TPE's start-up trials (Optuna's default count); the searcher spreads them over the params axis.
START_UP_TRIALS = 10
#: Draws from the wrapped sampler before a proposal that repeats a tried configuration gives way to the
#: nearest untried one.
ATTEMPTS = 8
#: The largest parameter grid :class:`DistinctSampler` enumerates (for the nearest untried point and to
#: know when every point was tried); larger or continuous spaces are treated as never exhausted.
MAX_ENUMERATED = 50_000


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
    levels, unranked = _rung_levels(trials)
    ordered = []
    for level in sorted(levels, reverse=True):
        members = levels[level]
        ordered.extend(members[i] for i in promotion_order(_level_points(level, members)))
    return ordered + unranked


def _rung_levels(trials: list[FrozenTrial]) -> tuple[dict[float, list[FrozenTrial]], list[FrozenTrial]]:
    """The trials by the epochs they reached (COMPLETE: infinity), and those with no rung recorded."""
    levels: dict[float, list[FrozenTrial]] = {}
    unranked = []
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            levels.setdefault(math.inf, []).append(trial)
        elif RUNG_VALUES in trial.user_attrs:
            levels.setdefault(float(trial.user_attrs.get("epochs", 0)), []).append(trial)
        else:
            unranked.append(trial)  # stopped before the searcher recorded rungs
    return levels, unranked


def _level_points(level: float, members: list[FrozenTrial]) -> list[tuple]:
    return [tuple(t.values if level == math.inf else t.user_attrs[RUNG_VALUES]) for t in members]


def rung_split(trials: list[FrozenTrial], count: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
    """``rung_order(trials)[:count]`` and the rest, each in the order of ``trials``: TPE's two groups.

    Only the level where the count ends is ranked (:func:`promotion_best`); the levels above and
    below it fall wholly in one group. In a large study most trials were stopped at the first rung,
    and ordering them took most of a suggest's time.
    """
    levels, unranked = _rung_levels(trials)
    chosen: set[int] = set()
    left = count
    for level in sorted(levels, reverse=True):
        members = levels[level]
        if left <= 0:
            break
        picked = range(len(members)) if len(members) <= left else promotion_best(_level_points(level, members), left)
        chosen.update(members[i].number for i in picked)
        left -= len(picked)
    chosen.update(trial.number for trial in unranked[:max(left, 0)])
    best: list[FrozenTrial] = []
    rest: list[FrozenTrial] = []
    for trial in trials:
        (best if trial.number in chosen else rest).append(trial)
    return best, rest


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of trials stopped early that a later trial continues: that trial speaks for the configuration."""
    return {t.user_attrs[CONTINUES] for t in trials if CONTINUES in t.user_attrs}


class RungTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE with its good/bad split taken from :func:`rung_order` (see the module docstring).

    ``_sample`` is Optuna's ``TPESampler._sample`` (5.x) but for these deviations, each needed because
    Optuna has no hook for them:

    - **The split**, once a finished trial was stopped early: every finished trial ranked by the rung it
      reached, then by the scheduler's order at that rung (non-dominated rank, then crowding distance,
      where Optuna breaks ties of the last rank by hypervolume subset selection), and the "good" group
      taken from the top. With no trial stopped early it is Optuna's own split (``_split_trials``), so
      the sampler proposes exactly what ``TPESampler`` proposes (tests/test_samplers.py).
    - **Continued trials**: a trial stopped early and continued later is left out (its continuation
      carries the configuration further).
    - **No constraints**: ``constraints_func`` is not supported in the rung split; wrn-search passes
      none (budgets bound the space itself, before sampling).
    - **choose**: when set (by :class:`DistinctSampler`, for one draw), it picks the proposal from
      TPE's candidates and their acquisition values, rather than the candidate of highest
      acquisition; where it picks none, up to :data:`ATTEMPTS` batches of candidates are drawn from
      the same estimators (built once: they cost the most at scale), and it must pick from the last.
    """

    choose: Callable[[list[dict[str, Any]], np.ndarray, bool], dict[str, Any] | None] | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._group_decomposed_search_space is not None:
            self._group_decomposed_search_space = IncrementalGroupDecomposedSearchSpace(include_pruned=True)
        self._internal_repr = InternalReprCache()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_internal_repr", InternalReprCache())  # a sampler pickled before the caches
        groups = self._group_decomposed_search_space
        if groups is not None and not isinstance(groups, IncrementalGroupDecomposedSearchSpace):
            incremental = IncrementalGroupDecomposedSearchSpace(groups._include_pruned)
            incremental.__dict__.update(groups.__dict__, _added=set())
            self._group_decomposed_search_space = incremental

    def _get_internal_repr(self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution],
                           study: Study) -> dict[str, np.ndarray]:
        return self._internal_repr.observations(trials, search_space, lambda trial: self._get_params(trial, study))

    def _sample(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        # Optuna's TPESampler._sample with the split replaced; Optuna has no hook for the split.
        states = [TrialState.COMPLETE, TrialState.PRUNED] + ([TrialState.RUNNING] if self._constant_liar else [])
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        continued = superseded(trials) | {trial.number}
        trials = [t for t in trials if t.number not in continued]
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        gamma = self._gamma or (default_gamma if len(study.directions) <= 1 else default_gamma_multiobjective)
        if any(t.state == TrialState.PRUNED for t in finished):
            best, rest = rung_split(finished, min(gamma(len(finished)), len(finished)))  # rung_order's first n
            below = sorted(best, key=lambda t: t.number)
            above = sorted(rest + [t for t in trials if t.state == TrialState.RUNNING], key=lambda t: t.number)
        else:  # nothing stopped early: exactly Optuna's split
            below, above = _split_trials(study, trials, gamma(len(finished)))
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above, handle_below=False)
        for batch in range(1 if self.choose is None else ATTEMPTS):
            samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
            scores = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
            if self.choose is None:
                best = self._compare(samples_below, scores)
                return {name: distribution.to_external_repr(best[name]) for name, distribution in search_space.items()}
            candidates = [{name: distribution.to_external_repr(samples_below[name][i].item())
                           for name, distribution in search_space.items()} for i in range(len(scores))]
            chosen = self.choose(candidates, scores, batch == ATTEMPTS - 1)
            if chosen is not None:
                return chosen
        raise AssertionError("choose picks from the last batch")


class InternalReprCache:
    """Optuna's ``TPESampler._get_internal_repr`` with each finished trial's values converted once.

    TPE rebuilds its estimators from every trial on each suggest; converting each parameter of each
    trial to Optuna's internal value was a loop over the whole study. A finished trial never changes
    (Optuna refuses to update it), so its row is kept by trial number; a running trial's is made again
    each time (TPE's constant liar reads its parameters from its system attributes).
    """

    _ABSENT = object()

    def __init__(self):
        self._rows: dict[tuple[str, ...], tuple[list, dict[int, tuple | None]]] = {}

    def __reduce__(self):
        return InternalReprCache, ()  # derived from the study: rebuilt, never saved with the searcher

    def observations(self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution],
                     params_of: Callable[[FrozenTrial], dict[str, Any]]) -> dict[str, np.ndarray]:
        space = list(search_space.items())
        names = tuple(search_space)
        known, rows = self._rows.get(names, (None, None))
        if known != space:  # another distribution under the same names: start again
            rows = {}
            self._rows[names] = (space, rows)
        matrix = []
        for trial in trials:
            row = rows.get(trial.number, self._ABSENT)  # kept only for a finished trial, which stays finished
            if row is self._ABSENT:
                params = params_of(trial)
                row = (tuple(distribution.to_internal_repr(params[name]) for name, distribution in space)
                       if search_space.keys() <= params.keys() else None)
                if trial.state.is_finished():
                    rows[trial.number] = row
            if row is not None:
                matrix.append(row)
        if not matrix:
            return {name: np.asarray([]) for name in search_space}
        values = np.array(matrix, dtype=float)
        # As Optuna's: a categorical's internal values are choice indices (integers), the others floats.
        return {name: values[:, j].astype(np.int64) if isinstance(distribution, CategoricalDistribution)
                else values[:, j] for j, (name, distribution) in enumerate(space)}


class IncrementalGroupDecomposedSearchSpace(_GroupDecomposedSearchSpace):
    """Optuna's group decomposition, adding each finished trial's distributions once, not on every suggest.

    Adding the distributions of a trial a second time leaves the groups as they are (each group is
    then inside them or apart from them), and a finished trial's distributions never change, so
    skipping the trials added before gives the same groups in the same order.
    """

    def __init__(self, include_pruned: bool = False) -> None:
        super().__init__(include_pruned)
        self._added: set[int] = set()

    def calculate(self, study: Study, use_cache: bool = False) -> _SearchSpaceGroup:
        if self._study_id is None:
            self._study_id = study._study_id
        elif self._study_id != study._study_id:
            raise ValueError("`_GroupDecomposedSearchSpace` cannot handle multiple studies.")
        states = (TrialState.COMPLETE, TrialState.PRUNED) if self._include_pruned else (TrialState.COMPLETE,)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        if len(trials) != len(self._added):  # else every one was added: they are the finished trials added before
            for trial in trials:
                if trial.number not in self._added:
                    self._added.add(trial.number)
                    self._search_space.add_distributions(trial.distributions)
        return copy.deepcopy(self._search_space)


class LatestTrials:
    """The newest trial of each configuration, as a scan of every trial in number order finds it, kept up to date
    by reading only the trials that can have changed since the last call: new ones, and those not finished then
    or not yet drawn. A finished trial never changes, and a trial's configuration never changes once drawn.

    A suggest read the whole study here once (10,000 trials: about a tenth of its time).
    """

    def __init__(self):
        self._study: tuple | None = None
        self._latest: dict[tuple, FrozenTrial] = {}
        self._position: dict[tuple, int] = {}  # configuration -> position of its newest trial
        self._read = 0  # trials read so far
        self._open: set[int] = set()  # positions to read again

    def update(self, study: Study, key_of: Callable[[FrozenTrial], tuple | None]) -> dict[tuple, FrozenTrial]:
        trials = study._get_trials(deepcopy=False, use_cache=False)
        if self._study != (id(study._storage), study._study_id) or len(trials) < self._read:
            self.__init__()
            self._study = (id(study._storage), study._study_id)
        for position in sorted(self._open.union(range(self._read, len(trials)))):
            trial = trials[position]
            key = key_of(trial)
            if key is None:
                self._open.add(position)
                continue
            newest = position >= self._position.get(key, -1)
            if newest:
                self._position[key], self._latest[key] = position, trial
            if newest and not trial.state.is_finished():
                self._open.add(position)
            else:
                self._open.discard(position)  # finished, or an older trial of its configuration: stays as it is
        self._read = len(trials)
        return dict(self._latest)


class _Probe:
    """A stand-in for an ``optuna.Trial`` that records the distribution of each parameter a space asks for."""

    def __init__(self):
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_categorical(self, name, choices):
        self.distributions[name] = CategoricalDistribution(choices)
        return choices[0]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.distributions[name] = IntDistribution(low, high, log=log, step=step)
        return low

    def suggest_float(self, name, low, high, step=None, log=False):
        self.distributions[name] = FloatDistribution(low, high, log=log, step=step)
        return low

    def set_user_attr(self, key, value):
        pass


def _values(distribution: BaseDistribution) -> list | None:
    """Every value of a discrete distribution, None for a continuous one."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if distribution.step is not None:
        count = round((distribution.high - distribution.low) / distribution.step) + 1
        return [round(distribution.low + i * distribution.step, 10) for i in range(count)]
    return None


def _distance(a: Any, b: Any, distribution: BaseDistribution) -> float:
    """How far apart two values of one parameter are, 0 to 1 (categorical: equal or not)."""
    if isinstance(distribution, CategoricalDistribution):
        return float(a != b)
    low, high = distribution.low, distribution.high
    if distribution.log:
        a, b, low, high = math.log(a), math.log(b), math.log(low), math.log(high)
    return abs(a - b) / (high - low) if high > low else 0.0


class DistinctSampler(optuna.samplers.BaseSampler):
    """``base``, never proposing a configuration of ``space`` that the study has tried.

    Optuna's samplers propose the same configuration again and again once they converge, and a
    trial is seeded, so a repeat trains for nothing (half of all trials, measured on the benchmark
    tables). Every parameter is sampled jointly here (each has one fixed distribution,
    :meth:`SearchSpace.suggest`): ``base`` draws as it would (its relative sampling, then its
    independent sampling for the rest), a draw that repeats a tried configuration is drawn again
    (TPE instead takes its best untried candidate), and after :data:`ATTEMPTS` the untried point of
    the parameter grid nearest to the last draw is proposed. Parameters map many-to-one onto
    configurations (N and k are moved into what the budget allows), so the check is on the
    configuration (:func:`~wrn_search.spaces.schema.config_key`). A configuration whose latest trial was
    stopped early is not "tried": proposing it again continues that trial.

    TPE's candidates are ranked by acquisition per MAC (its log density ratio less the log of the
    net's exact MACs per image, which an epoch's time follows): among equally promising nets the
    cheaper one is trained first, so finished points reach the front sooner (expected improvement
    per second, Snoek et al. 2012, with a cost known before training). Judged on every shipped
    table (benchmarks/README.md).
    """

    def __init__(self, base: optuna.samplers.BaseSampler, space: SearchSpace):
        self.base = base
        self.space = space
        probe = _Probe()
        space.suggest(probe)
        self.distributions = probe.distributions
        # Derived from the space and the study alone: rebuilt after unpickling, never saved with the searcher.
        self._decoded: dict[tuple, tuple[tuple, int]] = {}  # parameter values -> (configuration, MACs)
        self._trial_keys: dict[int, tuple] = {}  # trial number -> configuration
        self._grid: list[dict] | None = None
        self._configurations: set[tuple] | None = None
        self._pinned: dict[tuple, FrozenTrial] | None = None
        self._latest = LatestTrials()
        self._batches_tried = False

    def __getstate__(self) -> dict:
        return {"base": self.base, "space": self.space}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["base"], state["space"])

    # -- configurations --------------------------------------------------------------

    def key(self, params: dict[str, Any]) -> tuple:
        """The configuration the parameters stand for, as :func:`config_key` identifies it."""
        return self._decode(params)[0]

    def macs(self, params: dict[str, Any]) -> int:
        """MACs per image of the net the parameters stand for."""
        return self._decode(params)[1]

    def _decode(self, params: dict[str, Any]) -> tuple[tuple, int]:
        index = tuple(params[name] for name in self.distributions)
        if index not in self._decoded:
            config = self.space.suggest(optuna.trial.FixedTrial(params))
            self._decoded[index] = config_key(config, tuple(self.space.hyperparameters)), config["macs"]
        return self._decoded[index]

    @contextmanager
    def pinned(self, study: Study) -> Iterator[None]:
        """Read the study's trials once for the block: one proposal (the searcher's budget check, the draw and
        the continuation) reads a remote study once rather than three times; the trial being asked is not in it."""
        self._pinned = self.latest_trials(study)
        try:
            yield
        finally:
            self._pinned = None

    def latest_trials(self, study: Study, but: int | None = None) -> dict[tuple, FrozenTrial]:
        """The newest trial of each configuration the study has asked for (leaving out trial number ``but``);
        inside :meth:`pinned`, as the study was when the block began."""
        if self._pinned is not None:
            return self._pinned
        if but is None:  # what the loop below gives, kept up to date (:class:`LatestTrials`)
            return self._latest.update(study, self._trial_key)
        latest: dict[tuple, FrozenTrial] = {}
        for trial in study._get_trials(deepcopy=False, use_cache=False):
            key = self._trial_key(trial)
            if key is not None and trial.number != but:
                latest[key] = trial
        return latest

    def _trial_key(self, trial: FrozenTrial) -> tuple | None:
        """The trial's configuration, None before it is drawn."""
        key = self._trial_keys.get(trial.number)
        if key is None and "name" in trial.user_attrs:  # set once the trial's configuration is drawn
            key = self._trial_keys[trial.number] = config_key({"name": trial.user_attrs["name"], **trial.params},
                                                              tuple(self.space.hyperparameters))
        return key

    @staticmethod
    def open_to(latest: dict[tuple, FrozenTrial], key: tuple) -> bool:
        """Whether a new trial may have this configuration: never asked, or its latest trial stopped early."""
        trial = latest.get(key)
        return trial is None or trial.state == TrialState.PRUNED

    def grid(self) -> list[dict] | None:
        """Every parameter combination, or None where one is continuous or there are too many."""
        if self._grid is None:
            axes = [_values(distribution) for distribution in self.distributions.values()]
            if any(values is None for values in axes) or math.prod(map(len, axes)) > MAX_ENUMERATED:
                return None
            self._grid = [dict(zip(self.distributions, combination)) for combination in itertools.product(*axes)]
        return self._grid

    def open_with(self, study: Study, fixed: dict[str, Any]) -> bool:
        """Whether some configuration with these parameter values is open to a new trial (True where the
        space is not enumerated)."""
        grid = self.grid()
        if grid is None:
            return True
        latest = self.latest_trials(study)
        return any(self.open_to(latest, self.key(point)) for point in grid
                   if all(point[name] == value for name, value in fixed.items()))

    def exhausted(self, study: Study) -> bool:
        """Whether no configuration of a finite space is open to a new trial."""
        if self._configurations is None:
            grid = self.grid()
            if grid is None:
                return False
            self._configurations = {self.key(params) for params in grid}
        closed = {key for key, trial in self.latest_trials(study).items() if trial.state != TrialState.PRUNED}
        return self._configurations <= closed

    # -- Optuna's sampler interface ------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        fixed = trial.system_attrs.get("fixed_params", {})
        latest = self.latest_trials(study)

        def accept(params: dict[str, Any]) -> bool:
            return self.open_to(latest, self.key({**params, **fixed}))

        params: dict[str, Any] = {}
        for _ in range(ATTEMPTS):
            self._batches_tried = False
            params = {**self._draw(study, trial, accept), **fixed}
            if accept(params) or self._batches_tried:  # TPE drew its ATTEMPTS batches of candidates already
                break
        if accept(params):
            return params
        grid = self.grid()
        open_points = [point for point in grid or () if all(point[name] == value for name, value in fixed.items())
                       and accept(point)]
        if not open_points:
            return params  # nothing untried is left that fits the fixed parameters
        return min(open_points, key=lambda point: sum(_distance(point[name], params[name], distribution)
                                                       for name, distribution in self.distributions.items()))

    def _draw(self, study: Study, trial: FrozenTrial, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """One proposal of ``base`` for every parameter; TPE's is chosen by :meth:`_choose`."""
        if isinstance(self.base, RungTPESampler):
            self.base.choose = lambda candidates, scores, last: self._choose(candidates, scores, accept, last)
        try:
            relative = self.base.sample_relative(study, trial, self.base.infer_relative_search_space(study, trial))
        finally:
            if isinstance(self.base, RungTPESampler):
                self.base.choose = None
        return {name: relative[name] if name in relative else
                self.base.sample_independent(study, trial, name, distribution)
                for name, distribution in self.distributions.items()}

    def _choose(self, candidates: list[dict[str, Any]], scores: np.ndarray, accept: Callable[[dict[str, Any]], bool],
                last: bool) -> dict[str, Any] | None:
        """The open candidate of highest acquisition per MAC; none open: another batch, or from the ``last`` the
        highest (the caller then proposes the nearest open grid point).

        A candidate of only some parameters (TPE sampling one group of several) keeps its acquisition.
        """
        if any(len(candidate) < len(self.distributions) for candidate in candidates):
            return candidates[int(np.argmax(scores))]
        per_mac = scores - np.log([max(1, self.macs(candidate)) for candidate in candidates])
        order = np.argsort(-per_mac, kind="stable")
        chosen = next((candidates[i] for i in order if accept(candidates[i])), None)
        if chosen is None and last:
            self._batches_tried = True
            return candidates[order[0]]
        return chosen

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def _tpe(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    return RungTPESampler(seed=seed, n_startup_trials=START_UP_TRIALS, multivariate=True, group=True,
                          constant_liar=True)


def _nsga2(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, space.search.samples // 4)))


def _needs_scipy(name: str) -> None:
    try:
        import scipy  # noqa: F401  (GPSampler and QMCSampler need it)
    except ImportError:
        raise BadInput(f"sampler: {name!r} needs scipy; install it with `pip install scipy`") from None


def _gp(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    _needs_scipy("gp")
    return optuna.samplers.GPSampler(seed=seed)


def _qmc(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    _needs_scipy("qmc")
    return optuna.samplers.QMCSampler(seed=seed)


#: ``search.sampler`` -> its builder, given the space and the seed. Its keys are the schema's SAMPLERS.
SAMPLER_BUILDERS: dict[str, Callable[[SearchSpace, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": lambda space, seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda space, seed: AskTellGridSampler(space.grid_axes(), seed=seed),
    "gp": _gp,
    "qmc": _qmc,
}


def make_sampler(space: SearchSpace, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``space.search.sampler``; every one but the grid (which never repeats a point)
    inside a :class:`DistinctSampler`."""
    base = SAMPLER_BUILDERS[space.search.sampler](space, space.search.seed if seed is None else seed)
    return base if isinstance(base, optuna.samplers.GridSampler) else DistinctSampler(base, space)
