"""Search spaces: the YAML format, budgets feasible by construction, sampling, enumeration, ready spaces."""

import dataclasses
import itertools
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap

import optuna
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wrn_search.network.spec import SPEC_COLUMNS, WRNSpec, parse_block_type
from wrn_search.spaces.budget import CostBounds, CostModel, widen_factor_span
from wrn_search.spaces.parse import ready_spaces
from wrn_search.spaces.space import load_space, parse_space
from wrn_search.training.data import dataset_info
from wrn_search.training.recipe import TrainConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

READY = ["quickstart", "cifar10-mobile", "cifar10-2m", "cifar100-10m", "digits-wrn", "digits-lr", "digits-deep", "paper-block-types", "paper-svhn",
         "paper-width-depth"]
CIFAR = CostModel.for_dataset(dataset_info("cifar10"))


class RandomTrial:
    """Stands in for ``optuna.Trial``: draws with ``random.Random``, often at a range's ends, in microseconds."""

    def __init__(self, rng: random.Random):
        self.rng, self.params, self.user_attrs = rng, {}, {}

    def _pick(self, name, value):
        self.params[name] = value
        return value

    def suggest_categorical(self, name, choices):
        return self._pick(name, self.rng.choice(choices))

    def suggest_int(self, name, low, high, step=1, log=False):
        return self._pick(name, self.rng.choice([low, high, self.rng.randrange(low, high + 1, step)]))

    def suggest_float(self, name, low, high, step=None, log=False):
        if step:
            return self._pick(name, low + step * self.rng.randint(0, round((high - low) / step)))
        return self._pick(name, self.rng.uniform(low, high))

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


def space_from(text: str, source: str = "test.yaml"):
    return parse_space(yaml.safe_load(textwrap.dedent(text)), source)


def independent_cost(space, name: str) -> tuple[int, int]:
    """Params and MACs recomputed from the name alone, not through the space."""
    info = dataset_info(space.dataset.name)
    spec = WRNSpec.parse(name)
    return spec.num_params(info.num_classes, info.in_channels), spec.macs(info.input_size, info.num_classes,
                                                                          info.in_channels)


# -- ready spaces -------------------------------------------------------------------


def test_ready_spaces_are_shipped():
    assert ready_spaces() == sorted(READY)


@pytest.mark.parametrize("name", READY)
@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_ready_space_samples_only_feasible_valid_configs(name, seed):
    """20 seeds x 500 draws = 10,000 configs per ready space, all within budget and validly named."""
    space = load_space(name)
    rng = random.Random(seed)
    feasible = {spec.name for spec in space.architectures()}
    for _ in range(500):
        trial = RandomTrial(rng)
        config = space.suggest(trial)
        spec = WRNSpec.parse(config["name"])
        assert spec.name == config["name"] and WRNSpec.from_columns(config) == spec
        assert independent_cost(space, config["name"]) == (config["params"], config["macs"])
        assert space.budget.admits(config["params"], config["macs"])
        assert dataclasses.replace(spec, dropout=0.0).name in feasible
        assert trial.user_attrs == {key: config[key] for key in (*SPEC_COLUMNS, "params", "macs")}


@pytest.mark.parametrize("name", [n for n in READY if n not in ("paper-block-types", "paper-svhn")])  # listed nets
def test_ready_space_enumeration_is_the_brute_force_feasible_set(name):
    """Narrowing loses nothing: the feasible set equals the full product filtered with exact costs."""
    space = load_space(name)
    document = space.to_dict()["dimensions"]
    kernels_list = [parse_block_type(text) for text in document.get("block_types", ["B(3,3)"])]
    if "blocks_per_group" in document:  # N given: the depths it means for each block type
        depths = {kernels: [3 * n * len(kernels) + 4 for n in document["blocks_per_group"]]
                  for kernels in kernels_list}
    else:
        depth = document["depth"]
        depths = dict.fromkeys(kernels_list, range(depth["min"], depth["max"] + 1) if isinstance(depth, dict)
                               else depth)
    expected = set()
    for kernels in kernels_list:
        for d, k in itertools.product(depths[kernels], space.widen_factors):
            if (d - 4) % (3 * len(kernels)) != 0:
                continue
            spec = WRNSpec.from_depth(d, k, kernels)
            if space.budget.admits(*independent_cost(space, spec.name)):
                expected.add(spec.name)
    assert {spec.name for spec in space.architectures()} == expected
    assert space.feasible_count == len(expected)


def test_paper_block_types_are_table_2():
    space = load_space("paper-block-types")
    specs = list(space.architectures())
    assert [(s.block_type, s.blocks_per_group, s.widen_factor) for s in specs] == [
        ("B(1,3,1)", 6, 2), ("B(3,1)", 6, 2), ("B(1,3)", 6, 2), ("B(3,1,1)", 6, 2), ("B(3,3)", 4, 2),
        ("B(3,1,3)", 3, 2)]
    assert space.search.sampler == "grid" and space.grid_axes() == {"architecture": [s.name for s in specs]}


def test_paper_width_depth_grid():
    space = load_space("paper-width-depth")
    names = {spec.name for spec in space.architectures()}
    assert len(names) == 24 and {"WRN-28-10-B(3,3)", "WRN-40-4-B(3,3)", "WRN-16-8-B(3,3)"} <= names


# -- sampling through Optuna and Ray -------------------------------------------------------


def sample(space, sampler, trials: int) -> list[dict]:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    configs = []

    def objective(trial):
        config = space.suggest(trial)
        configs.append(config)
        return config["widen_factor"] / (config["depth"] + config["dropout"]), config["params"]

    study.optimize(objective, n_trials=trials)
    assert [t.user_attrs["name"] for t in study.trials] == [c["name"] for c in configs]
    return configs


def test_same_seed_same_configs_and_training_keys():
    space = load_space("quickstart")
    first = sample(space, optuna.samplers.TPESampler(seed=space.search.seed, n_startup_trials=5), 15)
    again = sample(load_space("quickstart"), optuna.samplers.TPESampler(seed=space.search.seed, n_startup_trials=5), 15)
    assert first == again
    assert set(first[0]) == {"name", "depth", "blocks_per_group", "widen_factor", "block_type", "dropout", "params",
                             "macs", "lr"}
    assert all(0.02 <= c["lr"] <= 0.2 and space.budget.admits(c["params"], c["macs"]) for c in first)


def test_suggest_pickles_and_replays_on_a_fixed_trial():
    space = load_space("cifar10-2m")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    config = space.suggest(trial)
    restored = pickle.loads(pickle.dumps(space.suggest))
    assert restored(optuna.trial.FixedTrial(trial.params)) == config
    assert pickle.loads(pickle.dumps(space)) == space


def test_grid_sampler_visits_each_architecture_once():
    space = load_space("paper-width-depth")
    axes = space.grid_axes()
    configs = sample(space, optuna.samplers.GridSampler(axes, seed=0), space.feasible_count)
    assert sorted(c["name"] for c in configs) == sorted(axes["architecture"])


def test_grid_mode_of_a_product_space_uses_the_grid_axes():
    document = load_space("quickstart").to_dict()
    document["dimensions"]["lr"] = [0.05, 0.1]
    document["dimensions"]["dropout"] = [0.0, 0.3]
    document["search"]["sampler"] = "grid"
    space = parse_space(document)
    axes = space.grid_axes()
    assert set(axes) == {"architecture", "dropout", "lr"}
    configs = sample(space, optuna.samplers.GridSampler(axes, seed=0), space.feasible_count * 4)
    assert len({(c["name"], c["lr"]) for c in configs}) == space.feasible_count * 4


def test_ray_optuna_search_uses_and_saves_the_space(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("quickstart")
    searcher = OptunaSearch(space=space.suggest, metric=["val_error", "params"], mode=["min", "min"],
                            sampler=optuna.samplers.TPESampler(seed=0), study_name="test-space")
    config = searcher.suggest("trial-1")
    assert space.budget.admits(config["params"], config["macs"])
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert WRNSpec.parse(restored.suggest("trial-2")["name"])


# -- budgets ---------------------------------------------------------------------------


def test_budget_bounds_are_inclusive():
    params = WRNSpec.parse("WRN-16-4").num_params()
    base = "dimensions: {depth: [16], widen_factor: [3, 4, 5]}\ndataset: {name: cifar10}\n"
    names = lambda extra: [s.widen_factor for s in space_from(base + extra).architectures()]  # noqa: E731
    assert names(f"budget: {{max_params: {params}}}") == [3, 4]
    assert names(f"budget: {{max_params: {params - 1}}}") == [3]
    assert names(f"budget: {{min_params: {params}}}") == [4, 5]
    assert names(f"budget: {{min_params: {params + 1}}}") == [5]
    macs = WRNSpec.parse("WRN-16-4").macs()
    assert names(f"budget: {{max_macs: {macs}}}") == [3, 4]
    assert names(f"budget: {{min_params: {params}, max_params: {params}}}") == [4]


def test_block_types_and_depths_without_a_feasible_width_are_not_offered():
    space = space_from("""
        dimensions: {depth: {min: 10, max: 40}, widen_factor: {min: 1, max: 2}, block_types: ["B(3,3)", "B(7,7)"]}
        dataset: {name: cifar10}
        budget: {max_params: 300000}
    """)
    assert [(o.block_type, o.blocks_per_group) for o in space.block_types] == [("B(3,3)", (1, 2, 3))]
    rng = random.Random(0)
    assert {space.suggest(RandomTrial(rng))["block_type"] for _ in range(200)} == {"B(3,3)"}


def test_unmeetable_budget_names_the_achievable_sizes():
    smallest, largest = WRNSpec.parse("WRN-10-1").num_params(), WRNSpec.parse("WRN-16-2").num_params()
    with pytest.raises(ValueError) as error:
        space_from(f"""
            dimensions: {{depth: {{min: 10, max: 16}}, widen_factor: {{min: 1, max: 2}}}}
            dataset: {{name: cifar10}}
            budget: {{max_params: {smallest - 1}}}
        """)
    message = str(error.value)
    assert message.startswith("test.yaml: budget: no architecture meets")
    assert f"{smallest:,} params" in message and f"{largest:,} params" in message


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 6),
    kernels=st.lists(st.sampled_from([1, 3, 5]), min_size=1, max_size=3).map(tuple),
    low=st.sampled_from([0.25, 0.5, 0.75, 1, 1.5, 2]),
    step=st.sampled_from([0.125, 0.25, 0.3, 1]),
    count=st.integers(1, 40),
    max_params=st.one_of(st.none(), st.integers(1_000, 40_000_000)),
    min_params=st.one_of(st.none(), st.integers(1_000, 20_000_000)),
    max_macs=st.one_of(st.none(), st.integers(100_000, 5_000_000_000)),
)
def test_width_span_matches_exact_filtering(n, kernels, low, step, count, max_params, min_params, max_macs):
    widths = [round(low + i * step, 10) for i in range(count)]
    budget = CostBounds(max_params, min_params, max_macs)
    fits = [budget.admits(*CIFAR.cost(n, k, kernels)) for k in widths]
    span = widen_factor_span(CIFAR, budget, n, kernels, widths)
    if span is None:
        assert not any(fits)
        return
    lo, hi = span
    assert all(fits[lo:hi + 1])  # never offers an over-budget net
    if widths[0] >= 1:  # costs are monotone in k from k = 1 on: the span is everything that fits
        assert sum(fits) == hi - lo + 1
    assert all(lo <= i <= hi for i, k in enumerate(widths) if k >= 1 and fits[i])  # exact from k = 1 on


def test_a_mac_budget_keeps_k_1_of_a_1x1_block_where_narrower_nets_miss():
    """Audit finding: k = 1 has no group-1 shortcut, so a B(1,1) net at k = 1 fits where k = 0.9375 does not."""
    widths = [0.5, 0.75, 0.875, 0.9375, 1, 1.25]
    budget = CostBounds(max_macs=CIFAR.cost(1, 1, (1, 1))[1])
    assert [budget.admits(*CIFAR.cost(1, k, (1, 1))) for k in widths] == [True, True, True, False, True, False]
    assert widen_factor_span(CIFAR, budget, 1, (1, 1), widths) == (4, 4)


@pytest.mark.parametrize("kernels", [(3, 3), (3, 1, 3)])
def test_rounded_channels_correct_the_quadratic_both_ways(kernels):
    """WRN-10-1.04 has more params than the unrounded quadratic says, WRN-10-1.01 fewer: budgets at each exact count."""
    widths = [round(1 + 0.01 * i, 10) for i in range(300)]
    costs = [CIFAR.cost(1, k, kernels)[0] for k in widths]
    for index in range(1, 300, 3):
        span = widen_factor_span(CIFAR, CostBounds(max_params=costs[index]), 1, kernels, widths)
        assert span == (0, max(i for i, cost in enumerate(costs) if cost <= costs[index]))
        span = widen_factor_span(CIFAR, CostBounds(min_params=costs[index]), 1, kernels, widths)
        assert span == (min(i for i, cost in enumerate(costs) if cost >= costs[index]), 299)


# -- format and validation ---------------------------------------------------------------


def test_defaults_and_sections():
    space = space_from("dimensions: {blocks_per_group: [2, 4], widen_factor: {min: 1, max: 2, step: 0.5}}")
    assert space.source == "test.yaml"
    assert space.dataset.name == "cifar10" and space.dataset.val_fraction == 0.1
    assert space.training == TrainConfig() and space.budget == CostBounds()
    assert "training" in space.to_dict() and space.to_dict()["training"] == {}  # only what differs from the paper
    assert (space.search.objectives, space.search.sampler, space.search.scheduler) == (("val_error", "params"),
                                                                                      "tpe", "moasha")
    assert space.resources.gpus_per_trial == 0
    assert space.widen_factors == (1, 1.5, 2) and space.feasible_count == 6
    single = space_from("dimensions: {blocks_per_group: 1, widen_factor: 1}\nsearch: {objectives: [val_error]}")
    assert single.search.scheduler == "asha"


def test_depth_range_becomes_valid_n_per_block_type():
    space = space_from("""
        dimensions: {depth: {min: 10, max: 40}, widen_factor: [2], block_types: ["B(3,3)", "B(3,1,3)", "B(3)"]}
    """)
    assert {o.block_type: o.blocks_per_group for o in space.block_types} == {
        "B(3,3)": (1, 2, 3, 4, 5, 6), "B(3,1,3)": (1, 2, 3, 4), "B(3)": tuple(range(2, 13))}


def test_to_yaml_round_trips_and_overrides(tmp_path):
    for name in READY:
        space = load_space(name)
        space.to_yaml(tmp_path / f"{name}.yaml")
        assert load_space(tmp_path / f"{name}.yaml") == space
    space = load_space("quickstart")
    changed = space.with_overrides(samples=5, max_concurrent=1, seed=7, gpus_per_trial="auto")
    assert (changed.search.samples, changed.search.max_concurrent, changed.search.seed) == (5, 1, 7)
    assert changed.resources.gpus_per_trial == "auto" and changed.source == "quickstart"
    assert space.search.samples == 30
    with pytest.raises(ValueError, match="override 'epochs'"):
        space.with_overrides(epochs=3)
    with pytest.raises(ValueError, match="search.samples: must be an integer from 1 to 1,000,000"):
        space.with_overrides(samples=0)


def test_epoch_budget_defaults_to_unlimited_round_trips_and_overrides(tmp_path):
    space = load_space("quickstart")
    assert space.search.epoch_budget is None
    budgeted = space.with_overrides(epoch_budget=300)
    assert budgeted.search.epoch_budget == 300
    budgeted.to_yaml(tmp_path / "budgeted.yaml")
    assert load_space(tmp_path / "budgeted.yaml") == budgeted
    assert budgeted.with_overrides(epoch_budget=None).search.epoch_budget is None
    with pytest.raises(ValueError, match="search.epoch_budget: must be an integer from 1 to 1,000,000,000, got 0"):
        space.with_overrides(epoch_budget=0)


def test_loading_a_space_checks_the_recipe_without_importing_torch():
    """TrainConfig lives in wrn_search.training.recipe so that ``wrn-search space`` starts fast and still checks it."""
    code = ("import sys; from wrn_search.spaces.space import load_space; load_space('quickstart'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


BASE = "dimensions: {depth: [16], widen_factor: [1, 2]}\n"

MALFORMED = [
    ("[1, 2]", "test.yaml: a search space is a mapping"),
    ("dimension: {}", "test.yaml: dimension: unknown key; allowed: dimensions, architectures"),
    ("dimensions: {depth: [16], widen_factor: [1], width: 3}", "dimensions.width: unknown key; allowed: depth"),
    ("dimensions: {widen_factor: [1]}", "dimensions: give exactly one of depth and blocks_per_group"),
    ("dimensions: {depth: [16], blocks_per_group: [2], widen_factor: [1]}", "give exactly one of depth"),
    ("dimensions: {depth: [16]}", "dimensions.widen_factor: required"),
    ("dimensions: {depth: [17], widen_factor: [1]}", "dimensions.depth: no allowed depth is 3*N*l+4 for B(3,3)"),
    ("dimensions: {depth: [16, 17], widen_factor: [1]}", "dimensions.depth: 17 is not 3*N*l+4 for any block type"),
    ("dimensions: {depth: {min: 16}, widen_factor: [1]}",
     "dimensions.depth.max: must be an integer from 7 to 1,000, got None"),
    ("dimensions: {depth: {min: 22, max: 16}, widen_factor: [1]}", "dimensions.depth: max 16 is below min 22"),
    ("dimensions: {depth: [16], widen_factor: {min: 1, max: 2.5}}", "widen_factor: a fractional range needs a step"),
    ("dimensions: {depth: [16], widen_factor: {min: 1, max: 2, stride: 1}}", "widen_factor.stride: unknown key"),
    ("dimensions: {depth: [16], widen_factor: [0, 1]}",
     "dimensions.widen_factor: must be a number in (0, 1000], got 0"),
    ("dimensions: {depth: [16], widen_factor: []}", "dimensions.widen_factor: an empty list allows nothing"),
    ("dimensions: {depth: [16], widen_factor: {min: 1, max: 1000, step: 0.001}}", "at most 100,000"),
    ("dimensions: {depth: [16], widen_factor: [1], block_types: 'B(3,3)'}", "block_types: must be a non-empty list"),
    ("dimensions: {depth: [16], widen_factor: [1], block_types: ['B(2,3)']}", "block_types: kernel sizes must be odd"),
    ("dimensions: {depth: [16], widen_factor: [1], dropout: [0.0, 1.0]}", "dimensions.dropout: must be a number in [0, 1)"),
    ("dimensions: {depth: [16], widen_factor: [1], lr: {min: 0.1, max: 0.01}}", "dimensions.lr: max 0.01 is below"),
    ("dimensions: {depth: [16], widen_factor: [1], lr: {min: 0, max: 1}}", "dimensions.lr.min: must be a number > 0"),
    ("dimensions: {depth: [16], widen_factor: [1], lr: {min: 0.1, max: 1, log: yes please}}",
     "dimensions.lr.log: must be true or false"),
    ("dimensions: {depth: [16], widen_factor: [1], lr: {min: 0.1, max: 1, step: 0.1, log: true}}",
     "step and log: true cannot be combined"),
    ("dimensions: {depth: [16], widen_factor: [1], batch_size: [64, 0.5]}", "dimensions.batch_size: must be an integer"),
    ("dimensions: {depth: [16], widen_factor: [1], lr: [0.1]}\ntraining: {lr: 0.1}", "training.lr: also searched"),
    ("dimensions: {depth: [16], widen_factor: [1], dropout: {min: 0, max: 0.5}}\nsearch: {sampler: grid}",
     "search.sampler: grid needs a discrete space, but dropout is a continuous range"),
    (BASE + "architectures: [WRN-16-1]", "dimensions.depth: not allowed with architectures:"),
    ("architectures: [WRN-17-1]", "architectures: depth: 17 is not 3*N*l+4"),
    ("architectures: []", "architectures: must be a non-empty list"),
    ("architectures: [WRN-28-10]\nbudget: {max_params: 1000000}", "architectures: WRN-28-10-B(3,3) has 36,479,194 params"),
    (BASE + "dataset: {name: imagenet}", "dataset: unknown dataset 'imagenet'; choose one of cifar10"),
    (BASE + "dataset: {name: cifar10, split: 0.1}", "dataset.split: unknown key; allowed: name, root, download, val_f"),
    (BASE + "dataset: {val_fraction: 1.0}", "dataset.val_fraction: must be a number in (0, 1), got 1.0"),
    (BASE + "dataset: {val_fraction: 0}", "dataset.val_fraction: must be a number in (0, 1), got 0"),
    (BASE + "dataset: {download: 1}", "dataset.download: must be true or false"),
    (BASE + "training: {epochs: 10, warmup: 5}", "training.warmup: unknown key; allowed: epochs, batch_size, lr,"),
    (BASE + "training: {epochs: 0}", "training.epochs: must be an integer from 1 to 100,000"),
    (BASE + "training: [1]", "training: must be a mapping of TrainConfig fields"),
    (BASE + "budget: {max_param: 10}", "budget.max_param: unknown key; allowed: max_params, min_params, max_macs"),
    (BASE + "budget: {max_params: -5}", "budget.max_params: must be an integer from 1 to 1,000,000,000, got -5"),
    (BASE + "budget: {max_params: 10, min_params: 20}", "budget: min_params 20 is above max_params 10"),
    (BASE + "search: {objectives: [params, val_error]}", "val_error must come first"),
    (BASE + "search: {objectives: [val_error, flops]}", "search.objectives: 'flops' is not one of val_error, params, macs"),
    (BASE + "search: {sampler: cmaes}", "search.sampler: 'cmaes' is not one of tpe, nsga2, random, grid, gp, qmc"),
    (BASE + "search: {sampler: nsga2}", "search.sampler: nsga2 breeds only from fully trained trials, so with "
                                         "scheduler moasha most trials never become parents"),
    (BASE + "search: {scheduler: pbt}", "search.scheduler: 'pbt' is not one of moasha, asha, hyperband, median, none"),
    (BASE + "search: {samples: 0}", "search.samples: must be an integer from 1 to 1,000,000"),
    (BASE + "search: {epoch_budget: 0}", "search.epoch_budget: must be an integer from 1 to 1,000,000,000, got 0"),
    (BASE + "search: {epoch_budget: 10.5}", "search.epoch_budget: must be an integer from 1 to 1,000,000,000, got 10.5"),
    (BASE + "search: {max_concurrent: 0}", "search.max_concurrent: must be an integer from 1 to 100,000"),
    (BASE + "search: {grace_period: 5}\ntraining: {epochs: 3}", "search.grace_period: 5 is more than training.epochs"),
    (BASE + "search: {reduction_factor: 1}", "search.reduction_factor: must be a number > 1"),
    (BASE + "search: {trials: 5}", "search.trials: unknown key; allowed: objectives, sampler, scheduler, samples"),
    (BASE + "resources: {gpus_per_trial: some}", "resources.gpus_per_trial (a number >= 0 or 'auto')"),
    (BASE + "resources: {cpus_per_trial: 0}", "resources.cpus_per_trial: must be a number > 0"),
    (BASE + "resources: {nodes: 2}", "resources.nodes: unknown key; allowed: cpus_per_trial, gpus_per_trial"),
]


@pytest.mark.parametrize("text,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_space_messages(tmp_path, text, message):
    path = tmp_path / "test.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_space(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message.removeprefix("test.yaml: ") in str(error.value)


# -- bad input that used to get through --------------------------------------------------------

#: One bad value of every TrainConfig field, as YAML, and the message: each used to load and fail in every trial.
BAD_TRAINING = {
    "epochs": ("0", "training.epochs: must be an integer from 1 to 100,000, got 0"),
    "batch_size": ("0", "training.batch_size: must be an integer from 1 to 1,048,576, got 0"),
    "lr": ("-1", "training.lr: must be a number > 0, got -1"),
    "momentum": ("1.5", "training.momentum: must be a number in [0, 1), got 1.5"),
    "nesterov": ("maybe", "training.nesterov: must be true or false, got 'maybe'"),
    "weight_decay": ("-0.1", "training.weight_decay: must be a number >= 0, got -0.1"),
    "schedule": ("linear", "training.schedule: 'linear' is not one of step, cosine"),
    "milestones": ("0.5", "training.milestones: must be increasing fractions of the epochs in (0, 1), got 0.5"),
    "gamma": ("2", "training.gamma: must be a number in (0, 1], got 2"),
    "label_smoothing": ("1", "training.label_smoothing: must be a number in [0, 1), got 1"),
    "augment": ("mixup", "training.augment: 'mixup' is not one of crop_flip, none"),
    "init": ("xavier", "training.init: 'xavier' is not one of torchvision, official"),
    "precision": ("fp16", "training.precision: 'fp16' is not one of auto, bf16, fp32"),
    "channels_last": ("1", "training.channels_last: must be true or false, got 1"),
    "compile": ("yes please", "training.compile: must be true or false, got 'yes please'"),
    "device": ("gpu", "training.device: 'gpu' is not 'auto' or a device: cpu, cuda, mps, xpu, optionally with an "
                      "index such as 'cuda:1'"),
    "seed": ("-1", "training.seed: must be an integer >= 0, got -1"),
    "num_threads": ("0", "training.num_threads: must be an integer >= 1, got 0"),
}


def test_bad_training_values_cover_every_train_config_field():
    from wrn_search.training.recipe import TrainConfig

    assert list(BAD_TRAINING) == [field.name for field in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize("key", BAD_TRAINING)
def test_every_training_value_is_checked_when_the_space_loads(key):
    value, message = BAD_TRAINING[key]
    with pytest.raises(ValueError) as error:
        space_from(BASE + f"training: {{{key}: {value}}}")
    assert str(error.value) == f"test.yaml: {message}"


def test_training_is_checked_as_a_whole():
    with pytest.raises(ValueError, match=r"^test.yaml: training.nesterov: needs momentum > 0$"):
        space_from(BASE + "training: {momentum: 0}")
    space = space_from(BASE + "training: {momentum: 0, nesterov: false, milestones: [0.5], device: 'cuda:1'}")
    assert space.training == TrainConfig(momentum=0, nesterov=False, milestones=(0.5,), device="cuda:1")
    assert space.to_dict()["training"] == {"momentum": 0, "nesterov": False, "milestones": [0.5], "device": "cuda:1"}


LIMITS = [
    # Ranges are capped before they are built (a depth range to 10^10 used to fill the memory).
    ("dimensions: {depth: {min: 10, max: 10000000000}, widen_factor: [1]}",
     "dimensions.depth.max: must be an integer from 7 to 1,000, got 10000000000"),
    ("dimensions: {blocks_per_group: [1, 10000000000], widen_factor: [1]}",
     "dimensions.blocks_per_group: must be an integer from 1 to 332, got 10000000000"),
    ("dimensions: {blocks_per_group: [300], widen_factor: [1]}",
     "dimensions.blocks_per_group: N = 300 makes B(3,3) nets 1804 layers deep; at most 1000"),
    ("dimensions: {depth: [16], widen_factor: {min: 1, max: 2, step: 5.0e-324}}",
     "dimensions.widen_factor: 1 to 2 in steps of 4.94066e-324 is too many values; at most 100,000"),
    ("dimensions: {depth: [16], widen_factor: [0.00001]}", "dimensions.widen_factor: must be >= 0.0001, got 1e-05"),
    ("dimensions: {depth: {min: 10, max: 40}, widen_factor: {min: 1, max: 100, step: 0.001}}\n"
     "budget: {max_params: 1000000000}", "feasible architectures; at most 100,000"),
    ("dimensions: {depth: [16], widen_factor: [1], batch_size: {min: 1, max: 200000}}\nsearch: {sampler: grid}",
     "dimensions.batch_size: 200,000 values; at most 100,000"),
    ("dimensions: {depth: [10], widen_factor: {min: 0.01, max: 10, step: 0.01}, batch_size: {min: 1, max: 200}}\n"
     "search: {sampler: grid}", "search.sampler: a grid of 200,000 points (architectures x searched values); "
                                "at most 100,000"),
    (BASE + "budget: {max_macs: 1" + "0" * 400 + "}", "budget.max_macs: must be an integer from 1 to "
                                                     "9,223,372,036,854,775,807"),
    # What a space can describe: a widen factor of 10^9 used to load and crash results writing.
    ("dimensions: {depth: [10], widen_factor: [1000000000]}",
     "dimensions.widen_factor: must be a number in (0, 1000], got 1000000000"),
    ("dimensions: {depth: [28], widen_factor: [500]}",
     "dimensions: WRN-28-500-B(3,3) has 91,074,496,474 params; at most 1,000,000,000 per net"),
    ("architectures: [WRN-10-1000000000]",
     "architectures: widen_factor: must be a number in (0, 1000], got 1000000000"),
    ("architectures: [WRN-10000-1-B(1)]", "architectures: WRN-10000-1-B(1) is 10000 layers deep; at most 1000"),
    ("architectures: [WRN-28-500]", "architectures: WRN-28-500-B(3,3) has 91,074,496,474 params; at most"),
    (BASE + "budget: {max_params: 2000000000}",
     "budget.max_params: must be an integer from 1 to 1,000,000,000, got 2000000000"),
    # Numbers beyond every range, and sizes where a wrong type was coerced.
    ("dimensions: {depth: [10], widen_factor: [1" + "0" * 400 + "]}",
     "dimensions.widen_factor: must be a number in (0, 1000], got 100000000000000000...0000000000000000000"),
    (BASE + "search: {samples: 1" + "0" * 40 + "}",
     "search.samples: must be an integer from 1 to 1,000,000, got 100000000000000000...0000000000000000000"),
    (BASE + "search: {epoch_budget: 10000000000}",
     "search.epoch_budget: must be an integer from 1 to 1,000,000,000, got 10000000000"),
    (BASE + "search: {max_concurrent: 1000000}", "search.max_concurrent: must be an integer from 1 to 100,000"),
    (BASE + "search: {seed: 4294967296}", "search.seed: must be an integer from 0 to 4,294,967,295, got 4294967296"),
    ("dimensions: {depth: [10], widen_factor: [1], block_types: [3, 3]}",
     "dimensions.block_types: 3 is not a block type such as 'B(3,3)' (a string)"),
]


@pytest.mark.parametrize("text,message", LIMITS, ids=[m for _, m in LIMITS])
def test_limits_of_a_space_are_one_line_errors(text, message):
    with pytest.raises(ValueError) as error:
        space_from(text)
    assert str(error.value).startswith("test.yaml: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_yaml_that_would_exhaust_memory_or_recursion_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    levels = ["&l0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path.write_text(BASE + "training: {milestones: [" + ", ".join(levels) + "]}\n")  # 10^9 strings expanded
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML: aliases \(\*name\) are not allowed in a "
                                         r"search space; write the value out in .* line 2"):
        load_space(path)
    path.write_text("dimensions: " + "[" * 200_000)
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML: nested more than 20 levels deep"):
        load_space(path)
    path.write_text(BASE + "# padding\n" * 200_000)
    with pytest.raises(ValueError, match=r"bad.yaml: larger than 1,048,576 bytes; a search space is a small YAML"):
        load_space(path)
    path.write_text("dimensions: {depth: [" + "1" * 5000 + "], widen_factor: [1]}")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML: Exceeds the limit \(4300 digits\)"):
        load_space(path)


def test_unreadable_inputs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dimensions: {depth: [16]")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML: "):
        load_space(bad)
    with pytest.raises(FileNotFoundError):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="'no-such-space' is neither a file nor a ready search space; ready spaces: "
                                         "cifar10-2m, "):
        load_space("no-such-space")


@pytest.mark.parametrize("text, key", [
    ("dimensions: {depth: [10], depth: [40], widen_factor: [1]}\n", "'depth'"),
    ("dimensions: {depth: [10], widen_factor: [1]}\nsearch: {samples: 5}\nsearch: {samples: 500}\n", "'search'"),
    ("dimensions: {depth: [10], widen_factor: [1]}\nsearch: {samples: 5, samples: 500}\n", "'samples'"),
])
def test_a_key_given_twice_is_refused_naming_it(tmp_path, text, key):
    """YAML keeps the last of two equal keys silently; one of them was a mistake."""
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"twice.yaml: not valid YAML: key {key} is given twice in .* line "):
        load_space(path)


def test_a_space_that_is_not_a_regular_file_is_refused_at_once(tmp_path):
    """A FIFO made `wrn-search space` wait forever for a writer."""
    fifo = tmp_path / "space.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=rf"^{fifo}: not a regular file; a search space is a small YAML file$"):
        load_space(fifo)
    with pytest.raises(ValueError, match=r"^/dev/zero: not a regular file"):
        load_space("/dev/zero")


def test_tpe_keeps_one_distribution_per_parameter_and_the_whole_width_range_after_start_up():
    """Audit finding: ranges that depended on block type and N confined grouped TPE to the first trial's range."""
    from wrn_search.search.samplers import make_sampler

    space = load_space("cifar10-mobile")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(space, seed=0))
    widths = []

    def objective(trial):
        config = space.suggest(trial)
        widths.append(config["widen_factor"])
        # Bigger is better, at a price: every net is near a smooth front.
        return 1 / math.log(config["params"]), config["params"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=70)
    for name in study.trials[0].distributions:
        assert len({repr(t.distributions[name]) for t in study.trials}) == 1, name
    after_start_up = widths[10:]
    assert max(after_start_up) >= 3 and min(after_start_up) == 1, sorted(set(after_start_up))
    assert len({t.user_attrs["name"] for t in study.trials}) >= 50  # of 84; 41-43 before the fix


def test_an_unknown_key_with_a_newline_is_still_one_line(tmp_path):
    """The fuzz test found it: the key was printed raw, and the CLI's one line showed only its first part."""
    path = tmp_path / "space.yaml"
    path.write_text('{"dimensions": {"x\\ny": 1}}')
    with pytest.raises(ValueError) as raised:
        load_space(path)
    assert "\n" not in str(raised.value) and "dimensions.'x\\ny': unknown key" in str(raised.value)
