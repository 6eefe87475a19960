"""A search space: which WRNs to sample, under which budget, on which data, trained how.

:func:`load_space` reads one (a path, or the name of a ready space shipped in
``wrn_search.search_spaces``) and validates every key (:mod:`wrn_search.spaces.parse`);
:meth:`SearchSpace.suggest` is the Optuna define-by-run function (:mod:`wrn_search.spaces.sampling`).
The budget is applied when the space is loaded: block types, blocks per group and widen factors that
cannot meet it are never offered to the sampler (:mod:`wrn_search.spaces.budget`). The format is
documented in docs/search-spaces.md. No torch or ray here, so ``wrn-search space`` starts fast.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wrn_search.errors import BadInput
from wrn_search.network.spec import SPEC_COLUMNS, WRNSpec, format_block_type
from wrn_search.plain import plain
from wrn_search.records import TrialConfig
from wrn_search.spaces.budget import CostBounds, CostModel, TrialBudget
from wrn_search.spaces.parse import field_names, read_space, space_fields
from wrn_search.spaces.sampling import Axis, BlockTypeOption, Structure
from wrn_search.spaces.schema import (
    MAX_ARCHITECTURES,
    MAX_GRID,
    DatasetSection,
    Resources,
    SearchSettings,
)
from wrn_search.training.data import dataset_info
from wrn_search.training.recipe import TRAINING_HYPERPARAMETERS, TrainConfig


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; build one with :func:`load_space`.

    The architecture part is either a product of dimensions (``block_types`` and
    ``widen_factors`` hold its feasible part) or a list of named nets (``listed``).
    """

    dimensions: dict
    listed: tuple[WRNSpec, ...] | None
    block_types: tuple[BlockTypeOption, ...]
    widen_factors: tuple[float, ...]
    hyperparameters: dict[str, Axis]
    dataset: DatasetSection
    #: The recipe every trial trains with, its searched hyperparameters on top (:meth:`TrainConfig.for_trial`).
    training: TrainConfig
    #: The ``budget:`` section: the cost bounds of every net the space offers.
    budget: CostBounds
    search: SearchSettings
    resources: Resources
    source: str = field(default="", compare=False)

    # -- sampling -------------------------------------------------------------

    @property
    def structure(self) -> Structure:
        """The block type, N and k parameters of a product of dimensions, and their inverse."""
        return Structure(self.block_types, self.widen_factors)

    def suggest(self, trial) -> dict:
        """Draw one feasible config in ``trial`` (an ``optuna.Trial``); define-by-run, picklable with the space.

        Returns :meth:`config`; its spec columns, ``params`` and ``macs`` are also set as
        the trial's user attributes. With the grid sampler the parameters are exactly
        the keys of :meth:`grid_axes`.
        """
        if self.listed is not None or self.search.sampler == "grid":
            spec = WRNSpec.parse(trial.suggest_categorical("architecture", [s.name for s in self.architectures()]))
        else:
            spec = self.structure.suggest(trial)
        grid = self.search.sampler == "grid"
        values = {name: trial.suggest_categorical(name, axis.grid(f"dimensions.{name}")) if grid
                  else axis.suggest(trial, name) for name, axis in self.hyperparameters.items()}
        config = self.config(spec, values)
        for key in (*SPEC_COLUMNS, "params", "macs"):  # optuna-dashboard slices trials by them
            trial.set_user_attr(key, config[key])
        return config

    def config(self, spec: WRNSpec, values: dict) -> TrialConfig:
        """The trial config of ``spec`` with the searched hyperparameter ``values`` (dropout goes into the spec).

        The spec's :data:`~wrn_search.network.spec.SPEC_COLUMNS` (a trial builds its net from them,
        :meth:`WRNSpec.from_columns`), ``params`` and ``macs`` at the dataset's input size, and
        the hyperparameters under their TrainConfig names: what a trial, a benchmark table
        row and a simulated trial all carry.
        """
        values = dict(values)
        if "dropout" in values:
            spec = replace(spec, dropout=values.pop("dropout"))
        params, macs = self.cost(spec)
        return {**spec.columns(), "params": params, "macs": macs, **values}

    def spread_over_params(self, count: int, seed: int, leave_out: Collection[WRNSpec] = ()) -> list[dict]:
        """Architecture parameters of up to ``count`` feasible nets spread over the params axis, for a study's
        first trials: the nets sorted by params are cut into ``count`` equal strata and one is drawn from
        each (seeded), cheapest first by MACs. Params and MACs are exact before training; random start-up
        trials are not spread. The first trials at an empty rung always continue, so cheap ones first put
        finished points on the front soonest (on every shipped table, benchmarks/README.md). Empty for
        named architectures and the grid (those enumerate nets themselves). ``leave_out``: nets (dropout 0) the
        study knows already (a warm start's, :func:`~wrn_search.search.warmstart.reused_nets`); the strata cut
        the rest."""
        if self.listed is not None or self.search.sampler == "grid":
            return []
        specs = sorted((spec for spec in self.architectures() if spec not in leave_out),
                       key=lambda spec: (self.cost(spec)[0], spec.name))
        count = min(count, len(specs))
        rng = random.Random(seed)
        picks = [rng.choice(specs[j * len(specs) // count:(j + 1) * len(specs) // count]) for j in range(count)]
        picks.sort(key=lambda spec: (self.cost(spec)[1], spec.name))
        return [self.structure.params(spec) for spec in picks]

    def trial_budget(self) -> TrialBudget:
        """``search.samples`` (capped at the grid's size for the grid sampler) and ``search.epoch_budget``."""
        samples = self.search.samples
        if self.search.sampler == "grid":
            samples = min(samples, math.prod(len(values) for values in self.grid_axes().values()))
        return TrialBudget(samples, self.search.epoch_budget)

    # -- enumeration ------------------------------------------------------------

    def architectures(self) -> Iterator[WRNSpec]:
        """Every feasible architecture (dropout as listed, else 0), smallest N and k first per block type."""
        if self.listed is not None:
            yield from self.listed
            return
        for option in self.block_types:
            for n, lo, hi in option.spans:
                for widen in self.widen_factors[lo:hi + 1]:
                    yield WRNSpec(n, widen, option.kernels)

    @property
    def feasible_count(self) -> int:
        """Number of feasible architectures (k is always discrete, so this is finite)."""
        if self.listed is not None:
            return len(self.listed)
        return sum(hi - lo + 1 for option in self.block_types for _, lo, hi in option.spans)

    @property
    def training_hyperparameters(self) -> tuple[str, ...]:
        """The searched TrainConfig fields (lr, weight_decay, batch_size), in that order: with the net's name
        (dropout included) they identify a configuration (:func:`~wrn_search.spaces.schema.config_key`)."""
        return tuple(name for name in TRAINING_HYPERPARAMETERS if name in self.hyperparameters)

    @property
    def continuous(self) -> tuple[str, ...]:
        """Names of the searched hyperparameters drawn from a continuous range."""
        return tuple(name for name, axis in self.hyperparameters.items() if axis.continuous)

    def grid_axes(self) -> dict[str, list]:
        """Axes for ``optuna.samplers.GridSampler``: every feasible architecture name, then each hyperparameter."""
        if self.continuous:
            raise BadInput(f"{self.source}: no grid: {', '.join(self.continuous)} continuous; give choices or a step")
        return {"architecture": [spec.name for spec in self.architectures()],
                **{name: axis.grid(f"dimensions.{name}") for name, axis in self.hyperparameters.items()}}

    def grid_configs(self) -> Iterator[TrialConfig]:
        """The trial config of every point of the grid (:meth:`grid_axes`), architectures in enumeration order."""
        axes = self.grid_axes()
        names = axes.pop("architecture")
        for name in names:
            spec = WRNSpec.parse(name)
            for combination in itertools.product(*axes.values()):
                yield self.config(spec, dict(zip(axes, combination)))

    def cost(self, spec: WRNSpec) -> tuple[int, int]:
        """(params, MACs per image) of ``spec`` on this space's dataset."""
        return CostModel.for_dataset(dataset_info(self.dataset.name)).cost(
            spec.blocks_per_group, spec.widen_factor, spec.kernels)

    # -- writing ----------------------------------------------------------------

    def to_dict(self) -> dict:
        """The resolved space (defaults filled in) as plain YAML data; ``parse_space`` reads it back."""
        architecture = ({"architectures": [spec.name for spec in self.listed]} if self.listed is not None else {})
        dimensions = {**self.dimensions, **{name: axis.to_yaml() for name, axis in self.hyperparameters.items()}}
        return plain({
            **({"dimensions": dimensions} if dimensions else {}),
            **architecture,
            "dataset": asdict(self.dataset),
            "training": self.training.overrides(),
            "budget": asdict(self.budget),
            "search": asdict(self.search),
            "resources": asdict(self.resources),
        })

    def to_yaml(self, path: str | os.PathLike) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, **overrides: Any) -> SearchSpace:
        """A new space with fields of ``search`` or ``resources`` replaced (e.g. samples, seed, gpus_per_trial)."""
        document = self.to_dict()
        sections = {"search": SearchSettings, "resources": Resources}
        for key, value in overrides.items():
            section = next((name for name, cls in sections.items() if key in field_names(cls)), None)
            if section is None:
                allowed = ", ".join(name for cls in sections.values() for name in field_names(cls))
                raise BadInput(f"{self.source}: override {key!r}: not a search or resources field; allowed: {allowed}")
            document[section][key] = value
        if "objectives" in overrides and "scheduler" not in overrides:
            document["search"]["scheduler"] = None
        return parse_space(document, self.source)


def load_space(path_or_name: str | os.PathLike) -> SearchSpace:
    """Load a search space from a YAML file, or a ready space by name (``quickstart``, ``cifar10-2m``, ...)."""
    return parse_space(*read_space(path_or_name))


def parse_space(document: Any, source: str = "<space>") -> SearchSpace:
    """Validate a space given as YAML data; errors name ``source``, the key and the allowed values."""
    try:
        return _build(document, source)
    except ValueError as error:
        raise BadInput(f"{source}: {error}") from None


def _build(document: Any, source: str) -> SearchSpace:
    space = SearchSpace(**space_fields(document), source=source)
    listed = space.listed
    _check_dropout_blocks(space)
    if space.feasible_count > MAX_ARCHITECTURES:
        raise BadInput(f"{'architectures' if listed is not None else 'dimensions'}: {space.feasible_count:,} "
                       f"feasible architectures; at most {MAX_ARCHITECTURES:,} (a coarser widen_factor step, "
                       "fewer depths or a tighter budget?)")
    if space.search.sampler == "grid":
        _check_grid(space)
    return space


def _check_dropout_blocks(space: SearchSpace) -> None:
    """Searched dropout needs blocks of two or more convs: dropout sits between a block's convs."""
    axis = space.hyperparameters.get("dropout")
    if axis is None or max(axis.choices or [axis.high]) == 0:
        return
    if space.listed is not None:
        kernels = [spec.kernels for spec in space.listed]
    else:
        kernels = [option.kernels for option in space.block_types]
    single = next((k for k in kernels if len(k) == 1), None)
    if single is not None:
        raise BadInput(f"dimensions.dropout: {format_block_type(single)} has one conv per block, with no place for "
                       "dropout (it sits between a block's convs); search dropout only over blocks of two or "
                       "more convs")


def _check_grid(space: SearchSpace) -> None:
    """The grid sampler lists every point: the space must be discrete, with at most MAX_GRID points."""
    if space.continuous:
        raise BadInput(f"search.sampler: grid needs a discrete space, but {', '.join(space.continuous)} is a "
                       "continuous range; give choices or a step")
    points = space.feasible_count * math.prod(len(axis.grid(f"dimensions.{name}"))
                                              for name, axis in space.hyperparameters.items())
    if points > MAX_GRID:
        raise BadInput(f"search.sampler: a grid of {points:,} points (architectures x searched values); at most "
                       f"{MAX_GRID:,}: fewer values, or a sampler such as tpe")

