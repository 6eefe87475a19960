"""The driver's speed-ups (issue 24) change no decision: each gives what the plain computation gives.

Each cache or shortcut is checked against the computation it replaces, on random inputs, and a whole
simulated search with all of them is checked against the same search with none of them (the same
trials, in the same order, with the same outcomes), so a later change of the search policy keeps the
two in step or fails here.
"""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace
from optuna.trial import TrialState, create_trial

from wrn_search.pareto import promotion_best, promotion_order, promotion_position
from wrn_search.runs import journal
from wrn_search.runs.storage import open_storage
from wrn_search.search import samplers, schedulers
from wrn_search.search.samplers import (
    RUNG_VALUES,
    DistinctSampler,
    IncrementalGroupDecomposedSearchSpace,
    InternalReprCache,
    LatestTrials,
    RungTPESampler,
    rung_order,
    rung_split,
)
from wrn_search.simulation.simulate import replay
from wrn_search.simulation.table import load_table
from wrn_search.spaces.space import load_space


def random_points(rng: random.Random) -> list[tuple]:
    """Up to 60 points of 1-3 objectives on a coarse or fine grid (ties and shared fronts), some NaN."""
    count, dimensions, grid = rng.randint(1, 60), rng.choice([1, 2, 2, 3]), rng.choice([3, 10, 1000])
    points = [tuple(rng.randint(0, grid) / grid for _ in range(dimensions)) for _ in range(count)]
    if rng.random() < 0.1:
        points[rng.randrange(count)] = (float("nan"),) * dimensions
    return points


def test_promotion_position_and_best_are_promotion_orders():
    rng = random.Random(0)
    for _ in range(120):
        points = random_points(rng)
        order = promotion_order(points)
        assert [promotion_position(points, i) for i in range(len(points))] == [order.index(i)
                                                                               for i in range(len(points))]
        for count in {0, 1, 2, len(points) // 3, len(points) // 2, len(points) - 1, len(points), len(points) + 1}:
            assert promotion_best(points, count) == set(order[:count]), (points, count)


def test_the_scheduler_promotes_as_promotion_order_says():
    rng = random.Random(1)
    for _ in range(100):
        points = random_points(rng)
        order = promotion_order(points)
        for factor in (2, 3):
            for i in range(len(points)):
                assert schedulers.promotes(i, points, factor) == (order.index(i) < max(1, -(-len(points) // factor)))


X = FloatDistribution(0.0, 1.0)


def random_trials(rng: random.Random, count: int) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials, trials stopped at epochs 1, 3 or 9 with their rung values, and some with none recorded."""
    trials = []
    for number in range(count):
        grid = rng.choice([4, 1000])
        values = [rng.randint(0, grid) / grid, float(rng.choice([10, 100, 1000]))]
        kind = rng.random()
        if kind < 0.2:
            trial = create_trial(state=TrialState.COMPLETE, params={"x": rng.random()}, distributions={"x": X},
                                 values=values)
        elif kind < 0.9:
            trial = create_trial(state=TrialState.PRUNED, params={"x": rng.random()}, distributions={"x": X},
                                 user_attrs={"epochs": rng.choice([1, 3, 9]), RUNG_VALUES: values})
        else:
            trial = create_trial(state=TrialState.PRUNED, params={"x": rng.random()}, distributions={"x": X})
        trial.number = number
        trials.append(trial)
    rng.shuffle(trials)
    return trials


def test_rung_split_is_the_head_of_rung_order_and_the_rest():
    rng = random.Random(2)
    for _ in range(300):
        trials = random_trials(rng, rng.randint(0, 80))
        ordered = rung_order(trials)
        for count in {0, 1, len(trials) // 10 + 1, len(trials) // 3, len(trials), len(trials) + 1}:
            best, rest = rung_split(trials, count)
            assert {t.number for t in best} == {t.number for t in ordered[:count]}
            assert {t.number for t in rest} == {t.number for t in ordered[count:]}
            assert [t for t in trials if t in best] == best and [t for t in trials if t in rest] == rest


MIXED = {"a": CategoricalDistribution(["p", "q", "r"]), "n": IntDistribution(1, 9),
         "lr": FloatDistribution(1e-3, 1.0, log=True)}


def test_the_internal_repr_cache_gives_optunas_arrays_as_trials_finish():
    """Finished trials from the cache, running ones made afresh (their relative parameters change nothing here),
    one trial lacking a parameter left out; the same values and dtypes as Optuna's own."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = RungTPESampler(seed=0, multivariate=True, group=True, constant_liar=True, n_startup_trials=3)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.add_trial(create_trial(state=TrialState.COMPLETE, params={"a": "q"}, distributions={"a": MIXED["a"]},
                                 values=[0.5, 1.0]))
    running = []
    plain = optuna.samplers.TPESampler._get_internal_repr
    for step in range(40):
        trial = study.ask(MIXED)
        running.append(trial)
        if step % 3:
            done = running.pop(0)
            study.tell(done, [float(done.params["lr"]), float(done.params["n"])])
        trials = study.get_trials(deepcopy=False)
        for space in (MIXED, {"a": MIXED["a"]}, {"lr": MIXED["lr"], "n": MIXED["n"]}):
            ours = sampler._get_internal_repr(trials, space, study)
            theirs = plain(sampler, trials, space, study)
            assert ours.keys() == theirs.keys()
            for name in space:
                assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name])
    # Another distribution under the same name is not served from the cache.
    wider = {**MIXED, "n": IntDistribution(0, 20)}
    trials = study.get_trials(deepcopy=False)
    assert np.array_equal(sampler._get_internal_repr(trials, wider, study)["n"],
                          plain(sampler, trials, wider, study)["n"])
    copy = pickle.loads(pickle.dumps(sampler))
    assert isinstance(copy._internal_repr, InternalReprCache) and not copy._internal_repr._rows


def test_incremental_group_decomposition_gives_optunas_groups_in_optunas_order():
    rng = random.Random(3)
    names = {"a": X, "b": FloatDistribution(0, 2), "c": IntDistribution(0, 5), "d": CategoricalDistribution([1, 2])}
    study = optuna.create_study()
    ours, theirs = IncrementalGroupDecomposedSearchSpace(True), _GroupDecomposedSearchSpace(True)
    for _ in range(60):
        chosen = rng.sample(sorted(names), rng.randint(1, 4))
        distributions = {name: names[name] for name in chosen}
        state = rng.choice([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
        study.add_trial(create_trial(state=state, params={n: d.to_external_repr(d.low if hasattr(d, "low") else 0)
                                                          for n, d in distributions.items()},
                                     distributions=distributions, values=[0.0] if state == TrialState.COMPLETE
                                     else None))
        assert ours.calculate(study).search_spaces == theirs.calculate(study).search_spaces


def test_a_journal_decision_is_fsynced_once_and_readable_at_once(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real(fd))
    path = str(tmp_path / "study.log")
    storage = open_storage(path)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    calls.clear()
    trial.set_user_attr("before", 0)
    trial.set_user_attr("outside", 0)
    assert len(calls) == 2  # outside a decision each record is fsynced, as Optuna does
    calls.clear()
    with journal.one_sync(storage):
        for i in range(5):
            trial.set_user_attr(f"k{i}", i)
        reader = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(path)))
        assert reader.trials[0].user_attrs == {"before": 0, "outside": 0, **{f"k{i}": i for i in range(5)}}
        assert calls == []
    assert len(calls) == 1
    with pytest.raises(RuntimeError), journal.one_sync(storage):
        trial.set_user_attr("late", 1)
        raise RuntimeError
    assert len(calls) == 2  # a decision that fails still syncs what it wrote
    again = pickle.loads(pickle.dumps(storage))
    assert again._backend._depth == 0 and optuna.load_study(study_name="s", storage=again).trials[0].user_attrs[
        "late"] == 1
    with journal.one_sync(optuna.storages.InMemoryStorage()):
        pass  # other storages: nothing to defer


def test_the_latest_trials_kept_up_to_date_are_a_scan_of_the_study_at_every_suggest(tmp_path, monkeypatch):
    checked = []
    pinned = DistinctSampler.pinned

    def checking(self, study):
        checked.append(self.latest_trials(study) == self.latest_trials(study, but=-1))  # -1: the scan itself
        return pinned(self, study)

    monkeypatch.setattr(DistinctSampler, "pinned", checking)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_sequence("digits-lr", 0, 8, tmp_path / "run")
    assert len(checked) > 50 and all(checked)


def full_scan(self, study, key_of):
    latest = {}
    for trial in study._get_trials(deepcopy=False, use_cache=False):
        key = key_of(trial)
        if key is not None:
            latest[key] = trial
    return latest


def plain_paths(monkeypatch) -> None:
    """Every speed-up replaced by the computation it stands for."""
    monkeypatch.setattr(LatestTrials, "update", full_scan)
    monkeypatch.setattr(RungTPESampler, "_get_internal_repr", optuna.samplers.TPESampler._get_internal_repr)
    monkeypatch.setattr(IncrementalGroupDecomposedSearchSpace, "calculate", _GroupDecomposedSearchSpace.calculate)
    monkeypatch.setattr(samplers, "rung_split", lambda trials, count: (rung_order(trials)[:count],
                                                                       rung_order(trials)[count:]))
    monkeypatch.setattr(schedulers, "promotion_position", lambda points, i: promotion_order(points).index(i))


def trial_sequence(table: str, seed: int, workers: int, tmp_path, storage=None) -> list[tuple]:
    space = load_space(table).with_overrides(seed=seed)
    tmp_path.mkdir()
    simulation = replay(space, load_table(table), workers, tmp_path, "s", storage=storage)
    return [(t.number, t.name, t.state, t.epochs, t.start_epoch, t.val_error, t.finished) for t in simulation.finished]


@pytest.mark.parametrize("table,seed,workers", [("digits-wrn", 0, 16), ("digits-deep", 2, 4)])
def test_a_simulated_search_makes_the_same_trials_with_and_without_the_speed_ups(tmp_path, monkeypatch, table, seed,
                                                                                 workers):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fast = trial_sequence(table, seed, workers, tmp_path / "fast", open_storage(str(tmp_path / "fast.log")))
    with monkeypatch.context() as patched:
        plain_paths(patched)
        plain = trial_sequence(table, seed, workers, tmp_path / "plain")
    assert len(fast) > 50 and fast == plain
