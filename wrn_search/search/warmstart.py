"""Warm start: trials of earlier runs enter a new study as already evaluated, at no cost.

People rarely run one search: they raise the budget, add a block type, widen an lr grid,
and would otherwise train again nets an earlier run already trained with the same recipe.
:meth:`WarmStart.plan` reads earlier runs (read-only) and keeps each configuration's latest
trial whose configuration lies in the new space and whose recipe (dataset split, every
training field, a simulated run's table) is the new run's; :meth:`WarmStart.apply` adds them
to the new study before its first ask (COMPLETE with their values, PRUNED with ``epochs``
and ``rung_values``, FAIL kept closed) and their rung values to the scheduler's rungs
(``scheduler.jsonl``, so a resume replays them). They are not asked by the searcher, so
they count neither against ``samples`` nor the epoch budget; :class:`~wrn_search.search.samplers.DistinctSampler`
sees them as tried. A reused stopped trial can be continued from its checkpoint in the
earlier run's Tune directory, which is only read (:func:`continued_checkpoints`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from wrn_search.network.spec import WRNSpec
from wrn_search.runs.checkpoints import TrialCheckpoints
from wrn_search.runs.layout import SPACE_FILE, RunManifest
from wrn_search.runs.results import SOURCE_RUN, SOURCE_TRIAL, load_curves
from wrn_search.runs.storage import open_storage, open_study
from wrn_search.search.schedulers import SuccessiveHalving
from wrn_search.spaces.schema import HYPERPARAMETERS, config_key
from wrn_search.spaces.space import SearchSpace, load_space
from wrn_search.training.recipe import CONTINUES, START_EPOCH

#: Config keys (and user attributes) of a trial that continues a reused stopped trial: where that trial's
#: checkpoints are, the earlier run's Tune experiment, and its number there.
CONTINUES_EXPERIMENT = "continues_experiment"
CONTINUES_TRIAL = "continues_trial"
#: User attributes of a source trial that describe its run there, not the configuration: not carried over.
RUN_ATTRS = ("trial_id", CONTINUES, START_EPOCH, CONTINUES_EXPERIMENT, CONTINUES_TRIAL, "retry_of")
#: Study states a reused trial may have; a trial still running in its run is left out.
REUSABLE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: How far a trial got, to pick one trial per configuration when several runs trained it.
_PROGRESS = {TrialState.COMPLETE: 2, TrialState.PRUNED: 1, TrialState.FAIL: 0}


@dataclass(frozen=True)
class ReusedTrial:
    """One trial of an earlier run as the new study gets it: ``params`` and ``distributions`` of the new space."""

    source_run: str
    source_trial: int
    state: TrialState
    params: dict
    distributions: dict
    values: list[float] | None
    user_attrs: dict
    #: Epoch -> metrics (``val_error``, ``params``, ``macs``) of the epochs its run logged: its rung values.
    curve: dict[int, dict]

    @property
    def epochs(self) -> int:
        return int(self.user_attrs.get("epochs", 0))

    @property
    def key(self) -> tuple:
        return (self.user_attrs["name"], *sorted(self.params.items()))

    def trial(self) -> FrozenTrial:
        return optuna.trial.create_trial(
            state=self.state, params=self.params, distributions=self.distributions, values=self.values,
            user_attrs={**self.user_attrs, SOURCE_RUN: self.source_run, SOURCE_TRIAL: self.source_trial})


@dataclass(frozen=True)
class SourceCount:
    """What became of one earlier run's trials."""

    run_dir: Path
    trials: int
    reused: int
    #: Outside the new space, or trained with another recipe.
    outside: int
    #: A later trial of the same configuration (a continuation, a retry), or another run's, speaks for it.
    superseded: int
    unfinished: int

    def line(self) -> str:
        parts = [f"{self.outside} outside the space or with another recipe"]
        if self.superseded:
            parts.append(f"{self.superseded} superseded by a later trial of the same configuration")
        if self.unfinished:
            parts.append(f"{self.unfinished} unfinished")
        return f"warm start: {self.reused} of {self.trials} trials reused from {self.run_dir.name}; " + "; ".join(parts)


@dataclass(frozen=True)
class WarmStart:
    """The trials of earlier runs that a new run reuses, and the count per run."""

    trials: tuple[ReusedTrial, ...]
    counts: tuple[SourceCount, ...]

    @classmethod
    def plan(cls, space: SearchSpace, run_dirs: Sequence[str | Path], own_run_dir: Path,
             table: str | None = None) -> WarmStart:
        """Read ``run_dirs`` (never written) for the trials that fit ``space``; ``table`` names the table of a
        simulated run (which takes simulated runs only). Bad input raises a one-line ``ValueError``."""
        chosen: dict[tuple, ReusedTrial] = {}
        sources = []
        for run_dir in dict.fromkeys(Path(path).expanduser().resolve() for path in run_dirs):
            source = _Source.open(run_dir, space, own_run_dir.resolve(), table)
            found = source.trials(space)
            for trial in found.reused:  # one trial per configuration: the one that got furthest
                other = chosen.get(trial.key)
                if other is None or _progress(trial) > _progress(other):
                    chosen[trial.key] = trial
            sources.append((run_dir, found))
        kept = {id(trial) for trial in chosen.values()}
        counts = []
        for run_dir, found in sources:
            used = sum(id(trial) in kept for trial in found.reused)
            counts.append(SourceCount(
                run_dir, found.total, used,
                outside=found.total - len(found.reused) - found.superseded - found.unfinished,
                superseded=found.superseded + len(found.reused) - used, unfinished=found.unfinished))
        return cls(tuple(chosen.values()), tuple(counts))

    def lines(self) -> list[str]:
        return [count.line() for count in self.counts]

    def say(self) -> None:
        for line in self.lines():
            print(f"wrn-search: {line}", file=sys.stderr, flush=True)

    @staticmethod
    def study(manifest: RunManifest) -> optuna.Study:
        """A new run's study, created before its searcher opens it, so that the reused trials are there first."""
        return optuna.create_study(study_name=manifest.study_name, storage=open_storage(manifest.storage),
                                   directions=manifest.directions)

    def apply(self, study: optuna.Study, scheduler: object | None) -> None:
        """Add the trials to ``study`` (before its first ask) and their rung values to ``scheduler``'s rungs."""
        first = len(study.get_trials(deepcopy=False))
        study.add_trials([trial.trial() for trial in self.trials])
        if not isinstance(scheduler, SuccessiveHalving):
            return  # Ray's hyperband and median keep no rungs of their own across a run
        for number, trial in enumerate(self.trials, start=first):
            reached = [m for m in scheduler.milestones if m <= trial.epochs and m in trial.curve]
            for milestone in reached:
                metrics = {**trial.user_attrs, **trial.curve[milestone]}
                values = [float(metrics[key]) for key in scheduler.objectives]
                stopped = trial.state == TrialState.PRUNED and milestone == trial.epochs
                scheduler.add(milestone, f"reused-{number}", values, stopped)


def reused_nets(study: optuna.Study) -> set[WRNSpec]:
    """The nets (dropout 0) of the study's trials reused from earlier runs: a warm-started search spreads its
    start-up trials over the other nets (:meth:`SearchSpace.spread_over_params`); none in a cold study."""
    return {replace(WRNSpec.parse(trial.user_attrs["name"]), dropout=0.0)
            for trial in study.get_trials(deepcopy=False) if SOURCE_RUN in trial.user_attrs}


def _recipe(space: SearchSpace, values: dict) -> dict:
    """What decides a configuration's result in ``space``: its recipe with the values ``space`` searches on top."""
    return space.training.for_trial({name: values[name] for name in space.hyperparameters}).recipe()


def _progress(trial: ReusedTrial) -> tuple:
    return _PROGRESS[trial.state], trial.epochs


def continued_from(trial: FrozenTrial) -> dict:
    """For a trial that continues ``trial`` (stopped early): where its checkpoints are when it was reused from
    a run with a Tune experiment (a simulated run has none); nothing for a trial of this run."""
    if SOURCE_RUN not in trial.user_attrs:
        return {}
    tune_path = RunManifest.load(trial.user_attrs[SOURCE_RUN]).tune_path
    if tune_path is None:
        return {}
    return {CONTINUES_EXPERIMENT: tune_path, CONTINUES_TRIAL: int(trial.user_attrs[SOURCE_TRIAL])}


def continued_checkpoints(config: dict, experiment_path: str) -> TrialCheckpoints:
    """The checkpoints a continuing trial starts from: the stopped trial's, in this run's Tune experiment or in
    the earlier run's it was reused from (only read: a trial prunes its own trial directory alone)."""
    return TrialCheckpoints(config.get(CONTINUES_EXPERIMENT, experiment_path),
                            int(config.get(CONTINUES_TRIAL, config[CONTINUES])))


@dataclass(frozen=True)
class _Source:
    """An earlier run opened for reading: its manifest, resolved space and study."""

    run_dir: Path
    manifest: RunManifest
    space: SearchSpace
    #: Whether its dataset split (and a simulated run's table) is the new run's: else no trial fits.
    same_data: bool

    @classmethod
    def open(cls, run_dir: Path, space: SearchSpace, own_run_dir: Path, table: str | None) -> _Source:
        if run_dir == own_run_dir:
            raise ValueError(f"warm_start: {run_dir} is the new run's own directory")
        try:
            manifest = RunManifest.load(run_dir)
        except ValueError as error:
            raise ValueError(f"warm_start: {str(error).removeprefix('run_dir: ')}") from None
        if (manifest.table is None) != (table is None):
            kind = "a simulated run" if table is None else "a Ray run"
            raise ValueError(f"warm_start: {run_dir} is {kind}; `wrn-search {'simulate' if table else 'run'}` "
                             f"warm-starts from {'simulated' if table else 'Ray'} runs only")
        if manifest.dataset != space.dataset.name:
            raise ValueError(f"warm_start: {run_dir} searched dataset {manifest.dataset!r}, not "
                             f"{space.dataset.name!r}")
        if list(manifest.objectives) != list(space.search.objectives):
            raise ValueError(f"warm_start: {run_dir} has objectives {list(manifest.objectives)}, not "
                             f"{list(space.search.objectives)}")
        source_space = load_space(str(run_dir / SPACE_FILE))
        split = (replace(source_space.dataset, root=None, download=False), source_space.search.seed)
        same_data = split == (replace(space.dataset, root=None, download=False), space.search.seed) \
            and manifest.table == table
        return cls(run_dir, manifest, source_space, same_data)

    def trials(self, space: SearchSpace) -> _Found:
        """The latest trial of each configuration, those of them that fit ``space``, and the counts."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study_trials = open_study(self.run_dir, self.manifest).get_trials(deepcopy=False)
        latest: dict[tuple, FrozenTrial] = {}
        unfinished = 0
        for trial in study_trials:
            if trial.state not in REUSABLE:
                unfinished += 1
            elif "name" in trial.user_attrs:
                latest[config_key(self.values(trial), HYPERPARAMETERS)] = trial
        found = _Found([], len(study_trials) - unfinished - len(latest), unfinished, len(study_trials))
        if not self.same_data:
            return found
        curves = self.curves({trial.number: trial.user_attrs.get(CONTINUES) for trial in study_trials})
        mapping = _Mapping(space)
        for trial in latest.values():
            values = self.values(trial)
            fitting = mapping.params(values) if self._same_recipe(space, values) else None
            if fitting is not None:
                found.reused.append(self.reused(trial, *fitting, curves.get(trial.number, {})))
        return found

    def values(self, trial: FrozenTrial) -> dict:
        """The trial's net name and every hyperparameter it trained with, searched or from the recipe."""
        spec = WRNSpec.parse(trial.user_attrs["name"])
        recipe = self.space.training
        fixed = {"dropout": spec.dropout, **{name: getattr(recipe, name) for name in HYPERPARAMETERS[1:]}}
        return {"name": spec.name, **{name: trial.params.get(name, fixed[name]) for name in HYPERPARAMETERS}}

    def _same_recipe(self, space: SearchSpace, values: dict) -> bool:
        """Whether the trial's recipe (this run's, its searched values on top) is the one ``space`` would train
        the configuration with."""
        return _recipe(self.space, values) == _recipe(space, values)

    def curves(self, continues: dict[int, int | None]) -> dict[int, dict[int, dict]]:
        """Trial number -> epoch -> logged metrics; a continuation's curve starts with the trial it continued's."""
        own: dict[int, dict[int, dict]] = {}
        for row in load_curves(self.run_dir).to_dict("records"):
            own.setdefault(int(row["number"]), {})[int(row["epoch"])] = row
        joined = {}
        for number in continues:
            curve, earlier = {}, number
            while earlier is not None and earlier in continues:  # back along the trials it continued
                curve = {**own.get(earlier, {}), **curve}
                earlier = continues[earlier]
            joined[number] = curve
        return joined

    def reused(self, trial: FrozenTrial, params: dict, distributions: dict, curve: dict[int, dict]) -> ReusedTrial:
        attrs = {key: value for key, value in trial.user_attrs.items() if key not in RUN_ATTRS}
        source_run, source_trial = str(self.run_dir), trial.number
        if SOURCE_RUN in attrs:  # reused there too: its checkpoints are in the run that trained it
            source_run, source_trial = attrs.pop(SOURCE_RUN), attrs.pop(SOURCE_TRIAL)
        values = list(trial.values) if trial.state == TrialState.COMPLETE else None
        return ReusedTrial(source_run, source_trial, trial.state, params, distributions, values, attrs, curve)


@dataclass
class _Found:
    """What one earlier run offers: the trials that fit, and what became of the others."""

    reused: list[ReusedTrial]
    superseded: int
    unfinished: int
    total: int


class _Mapping:
    """Parameters of a configuration in one space: the sampler's parameters that give it back."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.searched = tuple(space.hyperparameters)
        self.by_architecture = space.listed is not None or space.search.sampler == "grid"
        self.names = {self._bare(spec): spec.name for spec in space.architectures()} if self.by_architecture else {}

    def _bare(self, spec: WRNSpec) -> WRNSpec:
        """The net as the space draws it before a searched dropout goes in."""
        return replace(spec, dropout=0.0) if "dropout" in self.searched else spec

    def params(self, values: dict) -> tuple[dict, dict] | None:
        """(params, distributions) of the configuration ``values`` (name and hyperparameters), None outside."""
        spec = self._bare(WRNSpec.parse(values["name"]))
        if self.by_architecture:
            if spec not in self.names:
                return None
            params = {"architecture": self.names[spec]}
        else:
            try:
                params = self.space.structure.params(spec)
            except (StopIteration, ValueError):
                return None  # a block type, N or k the space lacks, or outside its budget
        params.update({name: values[name] for name in self.searched})
        trial = optuna.trial.FixedTrial(params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns of a value outside a range; checked below
            try:
                config = self.space.suggest(trial)
            except ValueError:  # a value that is not one of a categorical's choices
                return None
        distributions = trial.distributions
        inside = all(distributions[name]._contains(distributions[name].to_internal_repr(value))
                     for name, value in params.items())
        if not inside or config_key(config, self.searched) != config_key(values, self.searched):
            return None
        return params, distributions
