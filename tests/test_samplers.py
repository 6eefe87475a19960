"""The rung-aware TPE: trials stopped early are ranked by the rung they reached, then by their objectives there."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from wrn_search.search.samplers import RUNG_VALUES, RungTPESampler, rung_order

X = FloatDistribution(0.0, 1.0)


def stopped(x: float, epochs: int, error: float, params: float = 1000.0):
    return create_trial(state=TrialState.PRUNED, params={"x": x}, distributions={"x": X},
                        user_attrs={"epochs": epochs, RUNG_VALUES: [error, params]})


def complete(x: float, error: float, params: float = 1000.0):
    return create_trial(state=TrialState.COMPLETE, params={"x": x}, distributions={"x": X}, values=[error, params])


def test_rung_order_ranks_by_rung_reached_then_by_the_objectives_there():
    trials = [stopped(0.1, 3, 0.40), stopped(0.2, 9, 0.02), stopped(0.3, 3, 0.10), complete(0.4, 0.30),
              stopped(0.5, 1, 0.01), stopped(0.6, 9, 0.05, params=10.0),
              create_trial(state=TrialState.PRUNED, params={"x": 0.7}, distributions={"x": X})]
    order = [t.params["x"] for t in rung_order(trials)]
    # COMPLETE first; epoch 9 (both non-dominated: lower error, then error breaks the crowding tie); epoch 3 by
    # error; epoch 1; a trial stopped before rungs were recorded last.
    assert order == [0.4, 0.2, 0.6, 0.3, 0.1, 0.5, 0.7]


def proposals(sampler: optuna.samplers.BaseSampler) -> np.ndarray:
    """A study where only stopped trials tell where the good region is: near x = 0.8 they reached epoch 9."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    rng = np.random.default_rng(0)
    for x in rng.uniform(0, 1, 60):
        near = abs(x - 0.8) < 0.1
        study.add_trial(stopped(float(x), 9 if near else 1, 0.05 if near else 0.5))
    for x in rng.uniform(0, 0.5, 2):  # two fully trained, mediocre trials elsewhere
        study.add_trial(complete(float(x), 0.3))
    values = []
    for _ in range(30):
        trial = study.ask({"x": X})
        values.append(trial.params["x"])
        study.tell(trial, state=TrialState.PRUNED)  # told without rungs: ranked last, like a lost trial
    return np.asarray(values)


def test_stopped_trials_steer_the_rung_aware_tpe_but_not_optunas():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = proposals(RungTPESampler(seed=1, multivariate=True, n_startup_trials=5))
    optunas = proposals(optuna.samplers.TPESampler(seed=1, multivariate=True, n_startup_trials=5))
    near = lambda values: float(np.mean(np.abs(values - 0.8) < 0.15))  # noqa: E731
    assert near(ours) >= 0.6, ours
    assert near(optunas) < 0.4, optunas


def test_start_up_trials_are_spread_over_the_params_axis(tmp_path):
    from wrn_search.search.searcher import StudySearcher
    from wrn_search.spaces.budget import TrialBudget
    from wrn_search.spaces.space import load_space

    space = load_space("digits-wrn")
    specs = sorted(space.architectures(), key=lambda spec: space.cost(spec)[0])
    searcher = StudySearcher(space, tmp_path, "spread", "", TrialBudget(12), storage=optuna.storages.InMemoryStorage())
    configs = [searcher.suggest(f"t{i}") for i in range(12)]
    params = sorted(config["params"] for config in configs[:10])
    # One net from each tenth of the nets sorted by params.
    for stratum, size in enumerate(params):
        members = specs[stratum * len(specs) // 10:(stratum + 1) * len(specs) // 10]
        assert min(space.cost(s)[0] for s in members) <= size <= max(space.cost(s)[0] for s in members)
    assert not searcher.start_up and not searcher.study.get_trials(states=(TrialState.WAITING,))
    assert len({config["lr"] for config in configs[:10]}) == 2  # hyperparameters stay random


def history(seed: int) -> list:
    """COMPLETE trials of a three-parameter space, with ties on the front (equal values) that Optuna
    breaks by hypervolume subset selection."""
    rng = np.random.default_rng(seed)
    space = {"x": X, "n": optuna.distributions.IntDistribution(1, 6),
             "k": optuna.distributions.CategoricalDistribution(["a", "b", "c"])}
    trials = []
    for _ in range(40):
        params = {"x": float(rng.uniform()), "n": int(rng.integers(1, 7)), "k": str(rng.choice(["a", "b", "c"]))}
        values = [float(rng.choice([0.1, 0.2, 0.3, rng.uniform()])), float(rng.choice([1.0, 2.0, rng.uniform()]))]
        trials.append(create_trial(state=TrialState.COMPLETE, params=params, distributions=space, values=values))
    return trials


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("constant_liar", [False, True])
def test_with_no_trial_stopped_early_it_proposes_what_optunas_tpe_proposes(seed, constant_liar):
    def proposed(sampler_class) -> list[dict]:
        sampler = sampler_class(seed=seed, n_startup_trials=10, multivariate=True, group=True,
                                constant_liar=constant_liar)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        study.add_trials(history(seed))
        asked = []
        for _ in range(6):  # some stay RUNNING: the constant liar counts them
            trial = study.ask()
            asked.append({"x": trial.suggest_float("x", 0.0, 1.0), "n": trial.suggest_int("n", 1, 6),
                          "k": trial.suggest_categorical("k", ["a", "b", "c"])})
            if len(asked) % 2:
                study.tell(trial, [asked[-1]["x"], float(asked[-1]["n"])])
        return asked

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        assert proposed(RungTPESampler) == proposed(optuna.samplers.TPESampler)
