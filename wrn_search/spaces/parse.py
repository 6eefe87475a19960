"""Reading a search space: its YAML, safely, and every field checked with a one-line error.

Errors name the key and the allowed values; every cap of :mod:`wrn_search.spaces.schema` is checked
before anything of that size is built. :func:`space_fields` returns the fields of a
:class:`~wrn_search.spaces.space.SearchSpace`, which checks the whole space on top.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import asdict, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from wrn_search.checks import (
    is_number,
    require_bool,
    require_choice,
    require_int,
    require_number,
)
from wrn_search.errors import BadInput
from wrn_search.network.spec import (
    MAX_WIDEN_FACTOR,
    WRNSpec,
    format_block_type,
    parse_block_type,
    round_widen_factor,
    valid_depths_near,
)
from wrn_search.spaces.budget import CostBounds, CostModel, widen_factor_span
from wrn_search.spaces.sampling import Axis, BlockTypeOption, arange
from wrn_search.spaces.schema import (
    ARCHITECTURE_DIMENSIONS,
    HYPERPARAMETERS,
    MAX_CONCURRENT,
    MAX_COUNT,
    MAX_DEPTH,
    MAX_EPOCH_BUDGET,
    MAX_NESTING,
    MAX_PARAMS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_SPACE_BYTES,
    OBJECTIVES,
    SAMPLERS,
    SCHEDULERS,
    SECTIONS,
    DatasetSection,
    Resources,
    SearchSettings,
)
from wrn_search.training.data import dataset_info
from wrn_search.training.recipe import TrainConfig


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


def read_space(path_or_name: str | os.PathLike) -> tuple[Any, str]:
    """The YAML data of a space file, or of a ready space by name, and the source to name in errors."""
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists() or len(path.parts) > 1:
        if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
            raise BadInput(f"{path}: not a regular file; a search space is a small YAML file")
        with open(path, "rb") as file:
            data, source = file.read(MAX_SPACE_BYTES + 1), str(path)
        if len(data) > MAX_SPACE_BYTES:
            raise BadInput(f"{source}: larger than {MAX_SPACE_BYTES:,} bytes; a search space is a small YAML file")
    else:
        resource = files("wrn_search.search_spaces") / f"{path_or_name}.yaml"
        if not resource.is_file():
            raise BadInput(f"{path_or_name!r} is neither a file nor a ready search space; "
                           f"ready spaces: {', '.join(ready_spaces())}")
        data, source = resource.read_bytes(), str(path_or_name)
    try:
        return yaml.load(data, Loader=_SpaceLoader), source
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of over 4,300 digits
        raise BadInput(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None


def space_fields(document: Any) -> dict:
    """The validated fields of a :class:`~wrn_search.spaces.space.SearchSpace` from its YAML data."""
    if not isinstance(document, dict):
        raise BadInput(f"a search space is a mapping with the sections {', '.join(SECTIONS)}")
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
            raise BadInput(f"dimensions.{next(iter(architecture))}: not allowed with architectures:, "
                           "which names the nets; keep only dropout, lr, weight_decay, batch_size")
        listed, block_types, widen_factors = _listed(document["architectures"], model, budget), (), ()
    else:
        listed = None
        block_types, widen_factors = _product(architecture, model, budget)
    return {"dimensions": architecture, "listed": listed, "block_types": block_types, "widen_factors": widen_factors,
            "hyperparameters": hyperparameters, "dataset": dataset, "training": training, "budget": budget,
            "search": search, "resources": resources}


def _product(dims: dict, model: CostModel, budget: CostBounds) -> tuple[tuple[BlockTypeOption, ...], tuple[float, ...]]:
    """Feasible block types, N and k spans of a product of dimensions; no feasible net at all is an error."""
    if "widen_factor" not in dims:
        raise BadInput("dimensions.widen_factor: required (an int range, a float range with step, or a list), "
                       "or give architectures: instead of dimensions")
    widen_factors = _widen_factors(dims["widen_factor"])
    block_types = dims.get("block_types", ["B(3,3)"])
    if not isinstance(block_types, list) or not block_types:
        raise BadInput("dimensions.block_types: must be a non-empty list such as ['B(3,3)', 'B(3,1,3)']")
    for text in block_types:  # a list of numbers is no list of block types: no silent str(3)
        if not isinstance(text, str):
            raise BadInput(f"dimensions.block_types: {text!r} is not a block type such as 'B(3,3)' (a string)")
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
        raise BadInput(f"budget: no architecture meets {budget.describe()}; the dimensions give nets from "
                       f"{smallest[0]:,} params / {smallest[1]:,} MACs to {largest[0]:,} params / {largest[1]:,} MACs")
    return tuple(options), widen_factors


def _listed(names: Any, model: CostModel, budget: CostBounds) -> tuple[WRNSpec, ...]:
    if not isinstance(names, list) or not names:
        raise BadInput("architectures: must be a non-empty list of WRN names such as ['WRN-28-2', 'WRN-40-2-B(3,1)']")
    specs = []
    for name in names:
        try:
            spec = WRNSpec.parse(str(name))
        except ValueError as error:
            raise BadInput(f"architectures: {error}") from None
        params, macs = _cost_within_limits(spec, model, "architectures")
        if not budget.admits(params, macs):
            raise BadInput(f"architectures: {spec.name} has {params:,} params and {macs:,} MACs, "
                           f"outside the budget {budget.describe()}")
        specs.append(spec)
    return tuple(dict.fromkeys(specs))


def _cost_within_limits(spec: WRNSpec, model: CostModel, where: str) -> tuple[int, int]:
    """(params, MACs) of ``spec``, a net a space may hold: depth and params within the maxima (a spec's widen
    factor is within MAX_WIDEN_FACTOR already)."""
    if spec.depth > MAX_DEPTH:
        raise BadInput(f"{where}: {spec.name} is {spec.depth} layers deep; at most {MAX_DEPTH}")
    params, macs = model.cost(spec.blocks_per_group, spec.widen_factor, spec.kernels)
    if params > MAX_PARAMS:
        raise BadInput(f"{where}: {spec.name} has {params:,} params; at most {MAX_PARAMS:,} per net "
                       "(a smaller widen factor or depth, or a budget.max_params)")
    return params, macs


def _blocks_per_group(dims: dict, kernels_list: list[tuple[int, ...]]) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Allowed N per block type, from ``blocks_per_group`` or from ``depth`` (d = 3*N*l + 4), at most MAX_DEPTH deep."""
    if ("depth" in dims) == ("blocks_per_group" in dims):
        raise BadInput("dimensions: give exactly one of depth and blocks_per_group")
    if "blocks_per_group" in dims:
        ns = _int_values(dims["blocks_per_group"], "dimensions.blocks_per_group", 1, (MAX_DEPTH - 4) // 3)
        for kernels in kernels_list:
            if 3 * ns[-1] * len(kernels) + 4 > MAX_DEPTH:
                raise BadInput(f"dimensions.blocks_per_group: N = {ns[-1]} makes {format_block_type(kernels)} nets "
                               f"{3 * ns[-1] * len(kernels) + 4} layers deep; at most {MAX_DEPTH}")
        return {kernels: ns for kernels in kernels_list}
    depths = _int_values(dims["depth"], "dimensions.depth", 7, MAX_DEPTH)
    result = {}
    for kernels in kernels_list:
        step = 3 * len(kernels)
        ns = tuple((d - 4) // step for d in depths if d > 4 and (d - 4) % step == 0)
        if not ns:
            near = " or ".join(str(d) for d in valid_depths_near(depths[0], len(kernels)))
            raise BadInput(f"dimensions.depth: no allowed depth is 3*N*l+4 for {format_block_type(kernels)} "
                           f"(l={len(kernels)}); valid depths near it: {near}")
        result[kernels] = ns
    if isinstance(dims["depth"], list):
        for depth in depths:
            if all((depth - 4) % (3 * len(kernels)) for kernels in kernels_list):
                raise BadInput(f"dimensions.depth: {depth} is not 3*N*l+4 for any block type "
                               f"({', '.join(format_block_type(k) for k in kernels_list)})")
    return result


def _widen_factors(raw: Any) -> tuple[float, ...]:
    """The sorted grid of allowed widen factors: a list, an int range, or a float range with a step."""
    where = "dimensions.widen_factor"
    if isinstance(raw, dict):
        _check_keys(raw, where, ("min", "max", "step"))
        low, high = _widen_factor(raw, where, "min"), _widen_factor(raw, where, "max")
        if high < low:
            raise BadInput(f"{where}: max {high} is below min {low}")
        step = raw.get("step", 1)
        if "step" not in raw and not (float(low).is_integer() and float(high).is_integer()):
            raise BadInput(f"{where}: a fractional range needs a step, e.g. {{min: {low}, max: {high}, step: 0.25}}")
        values = arange(low, high, require_number(step, f"{where}.step", 0, open_low=True), where)
    else:
        values = [require_number(value, where, 0, MAX_WIDEN_FACTOR, open_low=True) for value in _as_list(raw, where)]
    # k as the nets carry it, so every widen factor is exactly the k of the nets it names
    return tuple(sorted({round_widen_factor(value, where) for value in values}))


def _int_values(raw: Any, where: str, minimum: int, maximum: int) -> tuple[int, ...]:
    """Integers from ``minimum`` to ``maximum``: a list, or a range whose ends are checked before it is built."""
    if isinstance(raw, dict):
        _check_keys(raw, where, ("min", "max", "step"))
        low = require_int(raw.get("min"), f"{where}.min", minimum, maximum)
        high = require_int(raw.get("max"), f"{where}.max", minimum, maximum)
        if high < low:
            raise BadInput(f"{where}: max {high} is below min {low}")
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
        raise BadInput(f"{where}: max {high} is below min {low}")
    log = raw.get("log", False)
    require_bool(log, f"{where}.log")
    step = raw.get("step")
    if step is not None:
        where_step = f"{where}.step"
        step = require_int(step, where_step, 1) if integer else require_number(step, where_step, 0, open_low=True)
        if log:
            raise BadInput(f"{where}: step and log: true cannot be combined")
    if log and low <= 0:
        raise BadInput(f"{where}: log: true needs min > 0, got {low}")
    return Axis(low=low, high=high, step=step, log=log, integer=integer)


def _dataset(raw: Any) -> DatasetSection:
    values = _section(raw, "dataset", DatasetSection)
    if not isinstance(values["name"], str):
        raise BadInput(f"dataset.name: must be a dataset name, got {values['name']!r}")
    dataset_info(values["name"])  # unknown names list the known ones
    if values["root"] is not None and not isinstance(values["root"], str):
        raise BadInput(f"dataset.root: must be a path or null, got {values['root']!r}")
    require_bool(values["download"], "dataset.download")
    require_bool(values["extra"], "dataset.extra")
    if values["extra"] and values["name"] != "svhn":
        raise BadInput(f"dataset.extra: only svhn has an extra split, not {values['name']!r}")
    # A search selects on validation error, so it needs a validation split.
    require_number(values["val_fraction"], "dataset.val_fraction", 0, 1, open_low=True, open_high=True)
    return DatasetSection(**values)


def _training(raw: Any, searched: dict[str, Axis]) -> TrainConfig:
    """The recipe: overrides of TrainConfig fields, every value checked now rather than in every trial."""
    keys = field_names(TrainConfig)
    if not isinstance(raw, dict):
        raise BadInput(f"training: must be a mapping of TrainConfig fields ({', '.join(keys)})")
    _check_keys(raw, "training", keys)
    for key in raw:
        if key in searched:
            raise BadInput(f"training.{key}: also searched in dimensions.{key}; give it in one place")
    try:
        return TrainConfig(**raw)
    except ValueError as error:  # its messages start with the field
        raise BadInput(f"training.{error}") from None


def _budget(raw: Any) -> CostBounds:
    values = _section(raw, "budget", CostBounds)
    for key, value in values.items():
        if value is not None:
            require_int(value, f"budget.{key}", 1, MAX_PARAMS if key.endswith("_params") else MAX_COUNT)
    budget = CostBounds(**values)
    if None not in (budget.min_params, budget.max_params) and budget.min_params > budget.max_params:
        raise BadInput(f"budget: min_params {budget.min_params:,} is above max_params {budget.max_params:,}")
    return budget


def _search(raw: Any, training: TrainConfig) -> SearchSettings:
    values = _section(raw, "search", SearchSettings)
    objectives = values["objectives"]
    if isinstance(objectives, str):
        objectives = [objectives]
    if not isinstance(objectives, (list, tuple)) or not objectives:
        raise BadInput(f"search.objectives: must be a list from {', '.join(OBJECTIVES)}, val_error first")
    for objective in objectives:
        require_choice(objective, "search.objectives", OBJECTIVES)
    if objectives[0] != "val_error" or len(set(objectives)) != len(objectives):
        raise BadInput(f"search.objectives: val_error must come first and each objective once, got {list(objectives)}")
    values["objectives"] = tuple(objectives)
    require_choice(values["sampler"], "search.sampler", SAMPLERS)
    if values["scheduler"] is None:
        values["scheduler"] = "moasha" if len(objectives) > 1 else "asha"
    require_choice(values["scheduler"], "search.scheduler", SCHEDULERS)
    if values["sampler"] == "nsga2" and values["scheduler"] != "none":
        raise BadInput(f"search.sampler: nsga2 breeds only from fully trained trials, so with scheduler "
                       f"{values['scheduler']} most trials never become parents and it is random search; use "
                       "sampler: tpe (it ranks stopped trials by the rung they reached) or scheduler: none")
    require_int(values["samples"], "search.samples", 1, MAX_SAMPLES)
    if values["epoch_budget"] is not None:
        require_int(values["epoch_budget"], "search.epoch_budget", 1, MAX_EPOCH_BUDGET)
    require_int(values["max_concurrent"], "search.max_concurrent", 1, MAX_CONCURRENT)
    require_int(values["seed"], "search.seed", 0, MAX_SEED)
    require_int(values["grace_period"], "search.grace_period", 1)
    if values["grace_period"] > training.epochs:
        raise BadInput(f"search.grace_period: {values['grace_period']} is more than training.epochs "
                       f"({training.epochs})")
    require_number(values["reduction_factor"], "search.reduction_factor", 1, open_low=True)
    return SearchSettings(**values)


def _resources(raw: Any) -> Resources:
    values = _section(raw, "resources", Resources)
    require_number(values["cpus_per_trial"], "resources.cpus_per_trial", 0, open_low=True)
    if values["gpus_per_trial"] != "auto":
        if is_number(values["gpus_per_trial"]) and values["gpus_per_trial"] > 1:
            raise BadInput("resources.gpus_per_trial: a trial trains on one GPU; give a number in [0, 1] or 'auto'")
        require_number(values["gpus_per_trial"], "resources.gpus_per_trial (a number >= 0 or 'auto')", 0)
    return Resources(**values)


def field_names(cls: type) -> tuple[str, ...]:
    """The keys a section dataclass allows."""
    return tuple(f.name for f in fields(cls))


def _check_keys(raw: Any, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(raw, dict):
        raise BadInput(f"{where or 'space'}: must be a mapping with keys from {', '.join(allowed)}, got {raw!r}")
    for key in raw:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            shown_key = key if isinstance(key, str) and key.isprintable() else repr(key)  # the message stays one line
            raise BadInput(f"{prefix}{shown_key}: unknown key; allowed: {', '.join(allowed)}")


def _section(raw: Any, where: str, cls: type) -> dict:
    """The section's keys checked against the dataclass fields, with its defaults filled in."""
    _check_keys(raw, where, field_names(cls))
    return {**asdict(cls()), **raw}


def _as_list(raw: Any, where: str) -> list:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise BadInput(f"{where}: an empty list allows nothing; give at least one value or a {{min, max}} range")
    return values


def _widen_factor(raw: dict, where: str, key: str) -> float:
    """A widen factor range's ``min`` or ``max``: required, and a number in (0, MAX_WIDEN_FACTOR]."""
    if key not in raw:
        raise BadInput(f"{where}.{key}: required in a range {{min, max[, step]}}")
    return require_number(raw[key], f"{where}.{key}", 0, MAX_WIDEN_FACTOR, open_low=True)
