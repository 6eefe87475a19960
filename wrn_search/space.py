"""Search spaces: YAML files that say which WRNs to sample, under which budget, on which data, trained how.

:func:`load_space` reads one (a path, or the name of a ready space shipped in
``wrn_search.search_spaces``) and validates every key; :meth:`SearchSpace.suggest`
is the Optuna define-by-run function. The budget is applied when the space is
loaded: block types, blocks per group and widen factors that cannot meet it are
never offered to the sampler (see :mod:`wrn_search.budget`). The format is
documented in docs/search-spaces.md. No torch or ray here, so ``wrn-search space``
starts fast.

What a space can describe is capped (file size, YAML nesting, depth, widen factor,
params per net, number of nets), and every cap is checked before anything of that
size is built, so a typo is a one-line error, not minutes of work and an exhausted memory.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Collection, Hashable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from .budget import Budget, CostModel, TrialBudget, widen_factor_span
from .checks import is_number, require_bool, require_choice, require_int, require_number
from .data import Dataset, dataset_info, load_dataset
from .recipe import TRAINING_HYPERPARAMETERS, TrainConfig
from .spec import (MAX_WIDEN_FACTOR, SPEC_COLUMNS, WRNSpec, format_block_type, parse_block_type, round_widen_factor,
                   valid_depths_near)

OBJECTIVES = ("val_error", "params", "macs")
SAMPLERS = ("tpe", "nsga2", "random", "grid", "gp", "qmc")
SCHEDULERS = ("moasha", "asha", "hyperband", "median", "none")
ARCHITECTURE_DIMENSIONS = ("depth", "blocks_per_group", "widen_factor", "block_types")
#: Searched hyperparameters besides the architecture: the spec's dropout, and TrainConfig fields.
HYPERPARAMETERS = ("dropout", *TRAINING_HYPERPARAMETERS)
SECTIONS = ("dimensions", "architectures", "dataset", "training", "budget", "search", "resources")
#: More allowed widen factors (or values of a searched hyperparameter, or points of a grid) than this is a
#: typo in a step, not a search space.
MAX_GRID = 100_000
#: More feasible architectures than this is a typo too; ``wrn-search space`` and a study's first trials
#: go through all of them.
MAX_ARCHITECTURES = 100_000
#: The deepest net a space may hold (d = 3*N*l + 4; the paper's deepest WRN is 40, pre-activation ResNets 1001).
MAX_DEPTH = 1000
#: The most trainable parameters of one net: 12 GB of fp32 weights, gradients and momentum before activations.
MAX_PARAMS = 1_000_000_000
#: Counts (MACs) are stored as int64.
MAX_COUNT = 2**63 - 1
#: A search space is a small YAML file; its data is nested a few levels deep.
MAX_SPACE_BYTES = 2**20
MAX_NESTING = 20
#: Trials of one search (a simulated one replays 1,000 in seconds), and their epochs in all.
MAX_SAMPLES = 1_000_000
MAX_EPOCH_BUDGET = 1_000_000_000
#: Trials at once: more than any cluster runs.
MAX_CONCURRENT = 100_000
#: The largest seed numpy's legacy generators (Optuna's samplers) take.
MAX_SEED = 2**32 - 1


def config_key(config: dict, hyperparameters: tuple[str, ...]) -> tuple:
    """What identifies a configuration, in a study and in a table: its WRN name (dropout included) and its
    training hyperparameters."""
    return (config["name"], *(round(float(config[name]), 10) for name in hyperparameters))


@dataclass(frozen=True)
class Axis:
    """A searched hyperparameter: ``choices``, or the range ``low..high`` (discrete with ``step`` or ``integer``)."""

    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def continuous(self) -> bool:
        return not self.choices and not self.integer and self.step is None

    def grid(self, where: str) -> list:
        """Every value of a discrete axis; more than MAX_GRID is an error naming ``where``."""
        if self.choices:
            return list(self.choices)
        if self.integer:
            values = range(int(self.low), int(self.high) + 1, int(self.step or 1))
            if len(values) > MAX_GRID:
                raise ValueError(f"{where}: {len(values):,} values; at most {MAX_GRID:,} (a larger step?)")
            return list(values)
        return _arange(self.low, self.high, self.step, where)

    def suggest(self, trial, name: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        value = trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        return round(value, 10) if self.step else value

    def to_yaml(self) -> Any:
        if self.choices:
            return list(self.choices)
        return {"min": self.low, "max": self.high, **({"step": self.step} if self.step else {}),
                **({"log": True} if self.log else {})}


@dataclass(frozen=True)
class BlockTypeOption:
    """One feasible block type with its feasible N, each with the span of ``widen_factors`` indices that fits
    the budget."""

    kernels: tuple[int, ...]
    spans: tuple[tuple[int, int, int], ...]  # (N, lo, hi)

    @property
    def block_type(self) -> str:
        return format_block_type(self.kernels)

    @property
    def blocks_per_group(self) -> tuple[int, ...]:
        return tuple(n for n, _, _ in self.spans)

    def span(self, n: int) -> tuple[int, int]:
        return next((lo, hi) for m, lo, hi in self.spans if m == n)


@dataclass(frozen=True)
class DatasetSection:
    name: str = "cifar10"
    root: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    #: SVHN only: add the 531k ``extra`` images to the training set, as the paper does.
    extra: bool = False

    def load(self, seed: int) -> Dataset:
        """The dataset with its seeded validation split (torch-free: numpy arrays)."""
        return load_dataset(self.name, root=self.root, download=self.download, val_fraction=self.val_fraction,
                            seed=seed, **({"extra": True} if self.extra else {}))


@dataclass(frozen=True)
class SearchSettings:
    objectives: tuple[str, ...] = ("val_error", "params")
    sampler: str = "tpe"
    #: Resolved on load: "moasha" with several objectives, "asha" with one.
    scheduler: str | None = None
    samples: int = 32
    #: Total training epochs of all trials; no new trial starts once they are spent. None: unlimited.
    epoch_budget: int | None = None
    max_concurrent: int = 2
    seed: int = 0
    grace_period: int = 1
    reduction_factor: float = 3


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1
    #: A number (fractions share a GPU) or "auto": a GPU share sized from the cost model (resources.AutoGPUResources).
    gpus_per_trial: float | str = 0


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
    budget: Budget
    search: SearchSettings
    resources: Resources
    source: str = field(default="", compare=False)

    # -- sampling -------------------------------------------------------------

    def suggest(self, trial) -> dict:
        """Draw one feasible config in ``trial`` (an ``optuna.Trial``); define-by-run, picklable with the space.

        Returns :meth:`config`; its spec columns, ``params`` and ``macs`` are also set as
        the trial's user attributes. With the grid sampler the parameters are exactly
        the keys of :meth:`grid_axes`.
        """
        if self.listed is not None or self.search.sampler == "grid":
            spec = WRNSpec.parse(trial.suggest_categorical("architecture", [s.name for s in self.architectures()]))
        else:
            spec = self._suggest_structure(trial)
        grid = self.search.sampler == "grid"
        values = {name: trial.suggest_categorical(name, axis.grid(f"dimensions.{name}")) if grid
                  else axis.suggest(trial, name) for name, axis in self.hyperparameters.items()}
        config = self.config(spec, values)
        for key in (*SPEC_COLUMNS, "params", "macs"):  # optuna-dashboard slices trials by them
            trial.set_user_attr(key, config[key])
        return config

    def config(self, spec: WRNSpec, values: dict) -> dict:
        """The trial config of ``spec`` with the searched hyperparameter ``values`` (dropout goes into the spec).

        The spec's :data:`~wrn_search.spec.SPEC_COLUMNS` (a trial builds its net from them,
        :meth:`WRNSpec.from_columns`), ``params`` and ``macs`` at the dataset's input size, and
        the hyperparameters under their TrainConfig names: what a trial, a benchmark table
        row and a simulated trial all carry.
        """
        values = dict(values)
        if "dropout" in values:
            spec = replace(spec, dropout=values.pop("dropout"))
        params, macs = self.cost(spec)
        return {**spec.columns(), "params": params, "macs": macs, **values}

    def _suggest_structure(self, trial) -> WRNSpec:
        """Block type, N and k: one parameter each, with one distribution for the whole study.

        Optuna's grouped TPE keeps the first distribution it sees for a name, so a range that
        depended on earlier choices would confine it to the first trial's range. N is drawn over
        every block type's N and moved to the nearest one the block type allows; k is drawn over the
        whole grid and mapped linearly into the span that fits the budget (both identity where
        the budget cuts nothing), so every feasible net stays reachable.
        """
        block_type = trial.suggest_categorical("block_type", [option.block_type for option in self.block_types])
        option = next(option for option in self.block_types if option.block_type == block_type)
        ns = sorted({n for other in self.block_types for n in other.blocks_per_group})
        if ns == list(range(ns[0], ns[-1] + 1)):
            wanted = trial.suggest_int("blocks_per_group", ns[0], ns[-1])
        else:
            wanted = trial.suggest_categorical("blocks_per_group", ns)
        n = min(option.blocks_per_group, key=lambda allowed: (abs(allowed - wanted), allowed))
        step = self._width_step()
        if step:
            low, high = int(self.widen_factors[0]), int(self.widen_factors[-1])
            position = (trial.suggest_int("widen_factor", low, high, step=step) - low) // step
        else:
            position = trial.suggest_int("widen_factor_index", 0, len(self.widen_factors) - 1)
        lo, hi = option.span(n)
        last = max(1, len(self.widen_factors) - 1)
        return WRNSpec(n, self.widen_factors[lo + round(position * (hi - lo) / last)], option.kernels)

    def spread_over_params(self, count: int, seed: int, leave_out: Collection[WRNSpec] = ()) -> list[dict]:
        """Architecture parameters of up to ``count`` feasible nets spread over the params axis, for a study's
        first trials: the nets sorted by params are cut into ``count`` equal strata and one is drawn from
        each (seeded), cheapest first by MACs. Params and MACs are exact before training; random start-up
        trials are not spread. The first trials at an empty rung always continue, so cheap ones first put
        finished points on the front soonest (on every shipped table, benchmarks/README.md). Empty for
        named architectures and the grid (those enumerate nets themselves). ``leave_out``: nets (dropout 0) the
        study knows already (a warm start's, :func:`~wrn_search.warmstart.reused_nets`); the strata cut the rest."""
        if self.listed is not None or self.search.sampler == "grid":
            return []
        specs = sorted((spec for spec in self.architectures() if spec not in leave_out),
                       key=lambda spec: (self.cost(spec)[0], spec.name))
        count = min(count, len(specs))
        rng = random.Random(seed)
        picks = [rng.choice(specs[j * len(specs) // count:(j + 1) * len(specs) // count]) for j in range(count)]
        picks.sort(key=lambda spec: (self.cost(spec)[1], spec.name))
        return [self._structure_params(spec) for spec in picks]

    def _structure_params(self, spec: WRNSpec) -> dict:
        """The parameters :meth:`_suggest_structure` turns into ``spec`` (a feasible architecture)."""
        option = next(option for option in self.block_types if option.kernels == spec.kernels)
        lo, hi = option.span(spec.blocks_per_group)
        last = max(1, len(self.widen_factors) - 1)
        index = self.widen_factors.index(spec.widen_factor)
        position = next(p for p in range(len(self.widen_factors)) if lo + round(p * (hi - lo) / last) == index)
        step = self._width_step()
        if step:
            width = {"widen_factor": int(self.widen_factors[0]) + position * step}
        else:
            width = {"widen_factor_index": position}
        return {"block_type": option.block_type, "blocks_per_group": spec.blocks_per_group, **width}

    def _width_step(self) -> int:
        """The step of an evenly spaced integer k grid (offered as k itself), else 0 (offered by index)."""
        steps = {b - a for a, b in zip(self.widen_factors, self.widen_factors[1:])}
        if all(float(k).is_integer() for k in self.widen_factors) and len(steps) <= 1:
            return int(next(iter(steps), 1))
        return 0

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
    def continuous(self) -> tuple[str, ...]:
        """Names of the searched hyperparameters drawn from a continuous range."""
        return tuple(name for name, axis in self.hyperparameters.items() if axis.continuous)

    def grid_axes(self) -> dict[str, list]:
        """Axes for ``optuna.samplers.GridSampler``: every feasible architecture name, then each hyperparameter."""
        if self.continuous:
            raise ValueError(f"{self.source}: no grid: {', '.join(self.continuous)} continuous; give choices or a step")
        return {"architecture": [spec.name for spec in self.architectures()],
                **{name: axis.grid(f"dimensions.{name}") for name, axis in self.hyperparameters.items()}}

    def grid_configs(self) -> Iterator[dict]:
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
        return _plain({
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
            section = next((name for name, cls in sections.items() if key in _field_names(cls)), None)
            if section is None:
                allowed = ", ".join(name for cls in sections.values() for name in _field_names(cls))
                raise ValueError(f"{self.source}: override {key!r}: not a search or resources field; allowed: {allowed}")
            document[section][key] = value
        if "objectives" in overrides and "scheduler" not in overrides:
            document["search"]["scheduler"] = None
        return parse_space(document, self.source)


# -- loading --------------------------------------------------------------------


def ready_spaces() -> list[str]:
    """Names of the search spaces shipped with the package."""
    return sorted(entry.name[:-5] for entry in files("wrn_search.search_spaces").iterdir()
                  if entry.name.endswith(".yaml"))


class _SpaceLoader(yaml.SafeLoader):
    """Safe YAML without aliases (a few lines of nested ``*alias`` expand to gigabytes) and at most
    MAX_NESTING levels deep (deeper nesting exhausts Python's recursion limit)."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a search space; "
                                              "write the value out", self.peek_event().start_mark)
        if self.depth == MAX_NESTING:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_NESTING} levels deep",
                                              self.peek_event().start_mark)
        self.depth += 1
        node = super().compose_node(parent, index)
        self.depth -= 1
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        """A key given twice is an error: YAML keeps the last silently, so one of them was a mistake."""
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_space(path_or_name: str | os.PathLike) -> SearchSpace:
    """Load a search space from a YAML file, or a ready space by name (``quickstart``, ``cifar10-2m``, ...)."""
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists() or len(path.parts) > 1:
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise ValueError(f"{path}: not a regular file; a search space is a small YAML file")
        with open(path, "rb") as file:
            data, source = file.read(MAX_SPACE_BYTES + 1), str(path)
        if len(data) > MAX_SPACE_BYTES:
            raise ValueError(f"{source}: larger than {MAX_SPACE_BYTES:,} bytes; a search space is a small YAML file")
    else:
        resource = files("wrn_search.search_spaces") / f"{path_or_name}.yaml"
        if not resource.is_file():
            raise ValueError(f"{path_or_name!r} is neither a file nor a ready search space; "
                             f"ready spaces: {', '.join(ready_spaces())}")
        data, source = resource.read_bytes(), str(path_or_name)
    try:
        document = yaml.load(data, Loader=_SpaceLoader)
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of over 4,300 digits
        raise ValueError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    return parse_space(document, source)


def parse_space(document: Any, source: str = "<space>") -> SearchSpace:
    """Validate a space given as YAML data; errors name ``source``, the key and the allowed values."""
    try:
        return _build(document, source)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _build(document: Any, source: str) -> SearchSpace:
    if not isinstance(document, dict):
        raise ValueError(f"a search space is a mapping with the sections {', '.join(SECTIONS)}")
    _check_keys(document, "", SECTIONS)
    dims = document.get("dimensions") or {}
    _check_keys(dims, "dimensions", ARCHITECTURE_DIMENSIONS + HYPERPARAMETERS)
    dataset = _dataset(document.get("dataset") or {})
    budget = _budget(document.get("budget") or {})
    hyperparameters = {name: _hyperparameter(name, dims[name]) for name in HYPERPARAMETERS if name in dims}
    training = _training(document.get("training") or {}, hyperparameters)
    search = _search(document.get("search") or {}, training)
    resources = _resources(document.get("resources") or {})
    model = CostModel.for_dataset(dataset_info(dataset.name))
    architecture = {key: dims[key] for key in ARCHITECTURE_DIMENSIONS if key in dims}
    if "architectures" in document:
        if architecture:
            raise ValueError(f"dimensions.{next(iter(architecture))}: not allowed with architectures:, "
                             "which names the nets; keep only dropout, lr, weight_decay, batch_size")
        listed, block_types, widen_factors = _listed(document["architectures"], model, budget), (), ()
    else:
        listed = None
        block_types, widen_factors = _product(architecture, model, budget)
    space = SearchSpace(architecture, listed, block_types, widen_factors, hyperparameters, dataset, training, budget,
                        search, resources, source)
    _check_dropout_blocks(space)
    if space.feasible_count > MAX_ARCHITECTURES:
        raise ValueError(f"{'architectures' if listed is not None else 'dimensions'}: {space.feasible_count:,} "
                         f"feasible architectures; at most {MAX_ARCHITECTURES:,} (a coarser widen_factor step, "
                         "fewer depths or a tighter budget?)")
    if search.sampler == "grid":
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
        raise ValueError(f"dimensions.dropout: {format_block_type(single)} has one conv per block, with no place for "
                         "dropout (it sits between a block's convs); search dropout only over blocks of two or "
                         "more convs")


def _check_grid(space: SearchSpace) -> None:
    """The grid sampler lists every point: the space must be discrete, with at most MAX_GRID points."""
    if space.continuous:
        raise ValueError(f"search.sampler: grid needs a discrete space, but {', '.join(space.continuous)} is a "
                         "continuous range; give choices or a step")
    points = space.feasible_count * math.prod(len(axis.grid(f"dimensions.{name}"))
                                              for name, axis in space.hyperparameters.items())
    if points > MAX_GRID:
        raise ValueError(f"search.sampler: a grid of {points:,} points (architectures x searched values); at most "
                         f"{MAX_GRID:,}: fewer values, or a sampler such as tpe")


def _product(dims: dict, model: CostModel, budget: Budget) -> tuple[tuple[BlockTypeOption, ...], tuple[float, ...]]:
    """Feasible block types, N and k spans of a product of dimensions; no feasible net at all is an error."""
    if "widen_factor" not in dims:
        raise ValueError("dimensions.widen_factor: required (an int range, a float range with step, or a list), "
                         "or give architectures: instead of dimensions")
    widen_factors = _widen_factors(dims["widen_factor"])
    block_types = dims.get("block_types", ["B(3,3)"])
    if not isinstance(block_types, list) or not block_types:
        raise ValueError("dimensions.block_types: must be a non-empty list such as ['B(3,3)', 'B(3,1,3)']")
    for text in block_types:  # a list of numbers is no list of block types: no silent str(3)
        if not isinstance(text, str):
            raise ValueError(f"dimensions.block_types: {text!r} is not a block type such as 'B(3,3)' (a string)")
    kernels_list = list(dict.fromkeys(parse_block_type(text, "dimensions.block_types") for text in block_types))
    options, sizes = [], []
    for kernels, ns in _blocks_per_group(dims, kernels_list).items():
        spans = []
        for n in ns:
            sizes.append((model.cost(n, widen_factors[0], kernels), model.cost(n, widen_factors[-1], kernels)))
            span = widen_factor_span(model, budget, n, kernels, widen_factors)
            if span is not None:
                _cost_within_limits(WRNSpec(n, widen_factors[span[1]], kernels), model, "dimensions")
                spans.append((n, *span))
        if spans:
            options.append(BlockTypeOption(kernels, tuple(spans)))
    if not options:
        smallest = min(small for small, _ in sizes)
        largest = max(large for _, large in sizes)
        raise ValueError(f"budget: no architecture meets {budget.describe()}; the dimensions give nets from "
                         f"{smallest[0]:,} params / {smallest[1]:,} MACs to {largest[0]:,} params / {largest[1]:,} MACs")
    return tuple(options), widen_factors


def _listed(names: Any, model: CostModel, budget: Budget) -> tuple[WRNSpec, ...]:
    if not isinstance(names, list) or not names:
        raise ValueError("architectures: must be a non-empty list of WRN names such as ['WRN-28-2', 'WRN-40-2-B(3,1)']")
    specs = []
    for name in names:
        try:
            spec = WRNSpec.parse(str(name))
        except ValueError as error:
            raise ValueError(f"architectures: {error}") from None
        params, macs = _cost_within_limits(spec, model, "architectures")
        if not budget.admits(params, macs):
            raise ValueError(f"architectures: {spec.name} has {params:,} params and {macs:,} MACs, "
                             f"outside the budget {budget.describe()}")
        specs.append(spec)
    return tuple(dict.fromkeys(specs))


def _cost_within_limits(spec: WRNSpec, model: CostModel, where: str) -> tuple[int, int]:
    """(params, MACs) of ``spec``, a net a space may hold: depth and params within the maxima (a spec's widen
    factor is within MAX_WIDEN_FACTOR already)."""
    if spec.depth > MAX_DEPTH:
        raise ValueError(f"{where}: {spec.name} is {spec.depth} layers deep; at most {MAX_DEPTH}")
    params, macs = model.cost(spec.blocks_per_group, spec.widen_factor, spec.kernels)
    if params > MAX_PARAMS:
        raise ValueError(f"{where}: {spec.name} has {params:,} params; at most {MAX_PARAMS:,} per net "
                         "(a smaller widen factor or depth, or a budget.max_params)")
    return params, macs


def _blocks_per_group(dims: dict, kernels_list: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Allowed N per block type, from ``blocks_per_group`` or from ``depth`` (d = 3*N*l + 4), at most MAX_DEPTH deep."""
    if ("depth" in dims) == ("blocks_per_group" in dims):
        raise ValueError("dimensions: give exactly one of depth and blocks_per_group")
    if "blocks_per_group" in dims:
        ns = _int_values(dims["blocks_per_group"], "dimensions.blocks_per_group", 1, (MAX_DEPTH - 4) // 3)
        for kernels in kernels_list:
            if 3 * ns[-1] * len(kernels) + 4 > MAX_DEPTH:
                raise ValueError(f"dimensions.blocks_per_group: N = {ns[-1]} makes {format_block_type(kernels)} nets "
                                 f"{3 * ns[-1] * len(kernels) + 4} layers deep; at most {MAX_DEPTH}")
        return {kernels: ns for kernels in kernels_list}
    depths = _int_values(dims["depth"], "dimensions.depth", 7, MAX_DEPTH)
    result = {}
    for kernels in kernels_list:
        step = 3 * len(kernels)
        ns = tuple((d - 4) // step for d in depths if d > 4 and (d - 4) % step == 0)
        if not ns:
            near = " or ".join(str(d) for d in valid_depths_near(depths[0], len(kernels)))
            raise ValueError(f"dimensions.depth: no allowed depth is 3*N*l+4 for {format_block_type(kernels)} "
                             f"(l={len(kernels)}); valid depths near it: {near}")
        result[kernels] = ns
    if isinstance(dims["depth"], list):
        for depth in depths:
            if all((depth - 4) % (3 * len(kernels)) for kernels in kernels_list):
                raise ValueError(f"dimensions.depth: {depth} is not 3*N*l+4 for any block type "
                                 f"({', '.join(format_block_type(k) for k in kernels_list)})")
    return result


def _widen_factors(raw: Any) -> tuple[float, ...]:
    """The sorted grid of allowed widen factors: a list, an int range, or a float range with a step."""
    where = "dimensions.widen_factor"
    if isinstance(raw, dict):
        _check_keys(raw, where, ("min", "max", "step"))
        low, high = _widen_factor(raw, where, "min"), _widen_factor(raw, where, "max")
        if high < low:
            raise ValueError(f"{where}: max {high} is below min {low}")
        step = raw.get("step", 1)
        if "step" not in raw and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"{where}: a fractional range needs a step, e.g. {{min: {low}, max: {high}, step: 0.25}}")
        values = _arange(low, high, require_number(step, f"{where}.step", 0, open_low=True), where)
    else:
        values = [require_number(value, where, 0, MAX_WIDEN_FACTOR, open_low=True) for value in _as_list(raw, where)]
    # k as the nets carry it, so every widen factor is exactly the k of the nets it names
    return tuple(sorted({round_widen_factor(value, where) for value in values}))


def _arange(low: float, high: float, step: float, where: str) -> list[float]:
    """``low, low + step, ... <= high``; more than MAX_GRID values is an error, found before listing any."""
    if not (high - low) / step < MAX_GRID:  # also catches an infinite quotient of a tiny step
        raise ValueError(f"{where}: {low:g} to {high:g} in steps of {step:g} is too many values; "
                         f"at most {MAX_GRID:,} (a larger step?)")
    return [round(low + index * step, 10) for index in range(math.floor((high - low) / step + 1e-9) + 1)]


def _int_values(raw: Any, where: str, minimum: int, maximum: int) -> tuple[int, ...]:
    """Integers from ``minimum`` to ``maximum``: a list, or a range whose ends are checked before it is built."""
    if isinstance(raw, dict):
        _check_keys(raw, where, ("min", "max", "step"))
        low = require_int(raw.get("min"), f"{where}.min", minimum, maximum)
        high = require_int(raw.get("max"), f"{where}.max", minimum, maximum)
        if high < low:
            raise ValueError(f"{where}: max {high} is below min {low}")
        return tuple(range(low, high + 1, require_int(raw.get("step", 1), f"{where}.step", 1)))
    return tuple(sorted({require_int(value, where, minimum, maximum) for value in _as_list(raw, where)}))


def _hyperparameter(name: str, raw: Any) -> Axis:
    """Parse dropout, lr, weight_decay or batch_size: a list of choices or a {min, max, step, log} range."""
    where = f"dimensions.{name}"
    integer = name == "batch_size"

    def value(raw_value: Any, key: str = where) -> float:
        """A choice or a range's end: checked by TrainConfig itself (dropout is the spec's, in [0, 1))."""
        if name == "dropout":
            return require_number(raw_value, key, 0, 1, open_high=True)
        TrainConfig.check(name, raw_value, key)
        return raw_value

    if not isinstance(raw, dict):
        return Axis(choices=tuple(dict.fromkeys(value(item) for item in _as_list(raw, where))))
    _check_keys(raw, where, ("min", "max", "step", "log"))
    low, high = value(raw.get("min"), f"{where}.min"), value(raw.get("max"), f"{where}.max")
    if high < low:
        raise ValueError(f"{where}: max {high} is below min {low}")
    log = raw.get("log", False)
    require_bool(log, f"{where}.log")
    step = raw.get("step")
    if step is not None:
        where_step = f"{where}.step"
        step = require_int(step, where_step, 1) if integer else require_number(step, where_step, 0, open_low=True)
        if log:
            raise ValueError(f"{where}: step and log: true cannot be combined")
    if log and low <= 0:
        raise ValueError(f"{where}: log: true needs min > 0, got {low}")
    return Axis(low=low, high=high, step=step, log=log, integer=integer)


def _dataset(raw: Any) -> DatasetSection:
    values = _section(raw, "dataset", DatasetSection)
    if not isinstance(values["name"], str):
        raise ValueError(f"dataset.name: must be a dataset name, got {values['name']!r}")
    dataset_info(values["name"])  # unknown names list the known ones
    if values["root"] is not None and not isinstance(values["root"], str):
        raise ValueError(f"dataset.root: must be a path or null, got {values['root']!r}")
    require_bool(values["download"], "dataset.download")
    require_bool(values["extra"], "dataset.extra")
    if values["extra"] and values["name"] != "svhn":
        raise ValueError(f"dataset.extra: only svhn has an extra split, not {values['name']!r}")
    # A search selects on validation error, so it needs a validation split.
    require_number(values["val_fraction"], "dataset.val_fraction", 0, 1, open_low=True, open_high=True)
    return DatasetSection(**values)


def _training(raw: Any, searched: dict[str, Axis]) -> TrainConfig:
    """The recipe: overrides of TrainConfig fields, every value checked now rather than in every trial."""
    keys = _field_names(TrainConfig)
    if not isinstance(raw, dict):
        raise ValueError(f"training: must be a mapping of TrainConfig fields ({', '.join(keys)})")
    _check_keys(raw, "training", keys)
    for key in raw:
        if key in searched:
            raise ValueError(f"training.{key}: also searched in dimensions.{key}; give it in one place")
    try:
        return TrainConfig(**raw)
    except ValueError as error:  # its messages start with the field
        raise ValueError(f"training.{error}") from None


def _budget(raw: Any) -> Budget:
    values = _section(raw, "budget", Budget)
    for key, value in values.items():
        if value is not None:
            require_int(value, f"budget.{key}", 1, MAX_PARAMS if key.endswith("_params") else MAX_COUNT)
    budget = Budget(**values)
    if None not in (budget.min_params, budget.max_params) and budget.min_params > budget.max_params:
        raise ValueError(f"budget: min_params {budget.min_params:,} is above max_params {budget.max_params:,}")
    return budget


def _search(raw: Any, training: TrainConfig) -> SearchSettings:
    values = _section(raw, "search", SearchSettings)
    objectives = values["objectives"]
    if isinstance(objectives, str):
        objectives = [objectives]
    if not isinstance(objectives, (list, tuple)) or not objectives:
        raise ValueError(f"search.objectives: must be a list from {', '.join(OBJECTIVES)}, val_error first")
    for objective in objectives:
        require_choice(objective, "search.objectives", OBJECTIVES)
    if objectives[0] != "val_error" or len(set(objectives)) != len(objectives):
        raise ValueError(f"search.objectives: val_error must come first and each objective once, got {list(objectives)}")
    values["objectives"] = tuple(objectives)
    require_choice(values["sampler"], "search.sampler", SAMPLERS)
    if values["scheduler"] is None:
        values["scheduler"] = "moasha" if len(objectives) > 1 else "asha"
    require_choice(values["scheduler"], "search.scheduler", SCHEDULERS)
    if values["sampler"] == "nsga2" and values["scheduler"] != "none":
        raise ValueError(f"search.sampler: nsga2 breeds only from fully trained trials, so with scheduler "
                         f"{values['scheduler']} most trials never become parents and it is random search; use "
                         "sampler: tpe (it ranks stopped trials by the rung they reached) or scheduler: none")
    require_int(values["samples"], "search.samples", 1, MAX_SAMPLES)
    if values["epoch_budget"] is not None:
        require_int(values["epoch_budget"], "search.epoch_budget", 1, MAX_EPOCH_BUDGET)
    require_int(values["max_concurrent"], "search.max_concurrent", 1, MAX_CONCURRENT)
    require_int(values["seed"], "search.seed", 0, MAX_SEED)
    require_int(values["grace_period"], "search.grace_period", 1)
    if values["grace_period"] > training.epochs:
        raise ValueError(f"search.grace_period: {values['grace_period']} is more than training.epochs "
                         f"({training.epochs})")
    require_number(values["reduction_factor"], "search.reduction_factor", 1, open_low=True)
    return SearchSettings(**values)


def _resources(raw: Any) -> Resources:
    values = _section(raw, "resources", Resources)
    require_number(values["cpus_per_trial"], "resources.cpus_per_trial", 0, open_low=True)
    if values["gpus_per_trial"] != "auto":
        if is_number(values["gpus_per_trial"]) and values["gpus_per_trial"] > 1:
            raise ValueError("resources.gpus_per_trial: a trial trains on one GPU; give a number in [0, 1] or 'auto'")
        require_number(values["gpus_per_trial"], "resources.gpus_per_trial (a number >= 0 or 'auto')", 0)
    return Resources(**values)


# -- small validators; messages name the key and what is allowed ------------------


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _check_keys(raw: Any, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"{where or 'space'}: must be a mapping with keys from {', '.join(allowed)}, got {raw!r}")
    for key in raw:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            shown_key = key if isinstance(key, str) and key.isprintable() else repr(key)  # the message stays one line
            raise ValueError(f"{prefix}{shown_key}: unknown key; allowed: {', '.join(allowed)}")


def _section(raw: Any, where: str, cls: type) -> dict:
    """The section's keys checked against the dataclass fields, with its defaults filled in."""
    _check_keys(raw, where, _field_names(cls))
    return {**asdict(cls()), **raw}


def _as_list(raw: Any, where: str) -> list:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ValueError(f"{where}: an empty list allows nothing; give at least one value or a {{min, max}} range")
    return values


def _widen_factor(raw: dict, where: str, key: str) -> float:
    """A widen factor range's ``min`` or ``max``: required, and a number in (0, MAX_WIDEN_FACTOR]."""
    if key not in raw:
        raise ValueError(f"{where}.{key}: required in a range {{min, max[, step]}}")
    return require_number(raw[key], f"{where}.{key}", 0, MAX_WIDEN_FACTOR, open_low=True)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so ``yaml.safe_dump`` writes them."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
