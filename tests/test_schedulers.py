"""The successive-halving promotion rule on hand-made rungs, and its persisted state."""

import math

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from wrn_search.pareto import crowding_distances, non_dominated, non_dominated_ranks, promotion_order
from wrn_search.runs.files import read_jsonl
from wrn_search.search.schedulers import SuccessiveHalving, promotes, rung_milestones


def test_fast_ranks_equal_peeled_fronts():
    rng = np.random.default_rng(0)
    for _ in range(500):
        points = [tuple(row) for row in rng.integers(0, 5, (int(rng.integers(1, 25)), int(rng.integers(1, 4))))]
        values, expected, remaining, front = np.asarray(points, float), [0] * len(points), list(range(len(points))), 0
        while remaining:
            on_front = non_dominated(values[remaining])
            for index, on in zip(remaining, on_front):
                expected[index] = front if on else expected[index]
            remaining = [index for index, on in zip(remaining, on_front) if not on]
            front += 1
        assert non_dominated_ranks(points) == expected, points


def test_dominance_and_ranks():
    assert non_dominated_ranks([(0.1, 100), (0.2, 100), (0.1, 100)]) == [0, 1, 0]  # equal points do not dominate
    points = [(0.10, 1000), (0.20, 100), (0.15, 500), (0.30, 1000), (0.25, 2000)]
    assert non_dominated_ranks(points) == [0, 0, 0, 1, 1]
    assert non_dominated_ranks([(0.1, 1), (0.2, 2), (0.3, 3)]) == [0, 1, 2]


def test_crowding_gives_boundaries_infinity():
    points = [(0.1, 300), (0.2, 200), (0.3, 100), (0.25, 110)]
    distances = crowding_distances(points, [0, 1, 2, 3])
    assert distances[0] == distances[2] == math.inf
    assert 0 < distances[3] < distances[1]


def test_single_trial_is_promoted():
    assert promotes(0, [(0.9, 10)], 3)


def test_small_net_on_the_front_survives_where_asha_would_stop_it():
    # Three big accurate nets and one tiny inaccurate one at the rung.
    points = [(0.05, 1_000_000), (0.06, 900_000), (0.07, 950_000), (0.40, 1_000)]
    assert promotes(3, points, reduction_factor=2)  # Pareto: the tiny net is on the front, at its boundary
    errors_only = [(p[0],) for p in points]
    assert not promotes(3, errors_only, reduction_factor=2)  # ASHA: worst error, stopped
    assert promotes(0, errors_only, reduction_factor=2)


def test_dominated_trial_is_stopped():
    points = [(0.1, 100), (0.2, 50), (0.3, 200)]
    assert not promotes(2, points, reduction_factor=3)


def test_ties_are_broken_so_at_most_the_quota_continues():
    points = [(0.2, 100), (0.2, 100), (0.2, 100), (0.5, 500)]
    assert promotion_order(points) == [0, 1, 2, 3]  # identical points: first come first
    assert [promotes(i, points, reduction_factor=3) for i in range(4)] == [True, True, False, False]  # ceil(4/3)
    # Two non-dominated boundary points both have infinite crowding distance: error breaks the tie.
    assert promotion_order([(0.3, 10), (0.1, 1000)]) == [1, 0]


def test_a_long_stream_of_ties_never_continues_more_than_ceil_n_over_rf():
    """Audit finding: tied points all continued (65% at a 50% rung). Digits' 431 validation images make ties common."""
    for objectives, reduction_factor in ((2, 3), (2, 2), (1, 3)):
        scheduler = SuccessiveHalving(["val_error", "params"][:objectives], max_t=30, grace_period=1,
                                      reduction_factor=reduction_factor)
        rng = np.random.default_rng(7)
        continued = {m: 0 for m in scheduler.milestones}
        for index in range(600):
            # Few distinct values: two nets, each at one of two errors; and stretches of one repeated point.
            values = (0.1, 1e4) if index % 50 < 20 else (float(rng.choice([0.1, 0.2])), float(rng.choice([1e3, 1e4])))
            milestone = scheduler.milestones[index % len(scheduler.milestones)]
            if scheduler.decide(f"t{index}", milestone, values[:objectives]) == TrialScheduler.CONTINUE:
                continued[milestone] += 1
            n = len(scheduler.rungs[str(milestone)])
            assert continued[milestone] <= math.ceil(n / reduction_factor), (objectives, reduction_factor, index)
        assert all(continued[m] == len(scheduler.rungs[str(m)]) - len(scheduler.stopped[str(m)])
                   for m in scheduler.milestones)


def test_a_random_stream_continues_about_one_in_rf():
    scheduler = SuccessiveHalving(["val_error", "params"], max_t=30, grace_period=1, reduction_factor=3)
    rng = np.random.default_rng(3)
    decisions = [scheduler.decide(f"t{i}", 1, (float(rng.random()), float(rng.integers(1, 10**6))))
                 for i in range(900)]
    assert 0.30 <= decisions.count(TrialScheduler.CONTINUE) / 900 <= 0.36


def test_reduction_factor_sets_the_kept_fraction():
    errors = [(e,) for e in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]
    kept = [i for i in range(6) if promotes(i, errors, reduction_factor=3)]
    assert kept == [0, 1]
    kept = [i for i in range(6) if promotes(i, errors, reduction_factor=2)]
    assert kept == [0, 1, 2]


def test_milestones():
    assert rung_milestones(10, 1, 3) == [1, 3]  # not 9: a trial promoted there would train one more epoch
    assert rung_milestones(9, 1, 3) == [1, 3]
    assert rung_milestones(8, 2, 2) == [2, 4]
    assert rung_milestones(200, 1, 3) == [1, 3, 9, 27]
    assert rung_milestones(10, 3, 2) == [3]
    assert rung_milestones(1, 1, 3) == []


def test_asynchronous_decisions_and_persistence(tmp_path):
    log = tmp_path / "scheduler.jsonl"
    scheduler = SuccessiveHalving(["val_error", "params"], max_t=9, grace_period=1, reduction_factor=3, log_path=log)
    assert scheduler.decide("a", 1, (0.5, 1000)) == TrialScheduler.CONTINUE  # first at the rung
    assert scheduler.decide("b", 1, (0.4, 900)) == TrialScheduler.CONTINUE   # dominates a
    assert scheduler.decide("c", 1, (0.6, 2000)) == TrialScheduler.STOP      # dominated by both
    assert scheduler.decide("d", 1, (0.55, 1500)) == TrialScheduler.STOP     # third of four; ceil(4/3) = 2
    assert scheduler.decide("a", 2, (0.45, 1000)) == TrialScheduler.CONTINUE  # between rungs
    assert scheduler.decide("b", 9, (0.1, 900)) == TrialScheduler.CONTINUE   # full budget
    assert read_jsonl(log) == [  # one line per rung decision, nothing for the others
        {"milestone": 1, "trial_id": "a", "values": [0.5, 1000], "stopped": False},
        {"milestone": 1, "trial_id": "b", "values": [0.4, 900], "stopped": False},
        {"milestone": 1, "trial_id": "c", "values": [0.6, 2000], "stopped": True},
        {"milestone": 1, "trial_id": "d", "values": [0.55, 1500], "stopped": True},
    ]
    with open(log, "a") as file:
        file.write('{"milestone": 1, "trial_id": "x", "val')  # a kill in the middle of a line

    restored = SuccessiveHalving(["val_error", "params"], max_t=9, grace_period=1, reduction_factor=3, log_path=log)
    assert restored.rungs["1"] == {"a": [0.5, 1000], "b": [0.4, 900], "c": [0.6, 2000], "d": [0.55, 1500]}
    assert restored.decide("c", 1, (0.6, 2000)) == TrialScheduler.STOP  # stopped before the restore: stays stopped
    assert restored.decide("b", 1, (0.4, 900)) == TrialScheduler.CONTINUE  # continued before the restore
    assert restored.decide("e", 1, (0.7, 5000)) == TrialScheduler.STOP  # compared with the saved rung
    assert restored.num_stopped == 3
    assert SuccessiveHalving(["val_error", "params"], max_t=9, log_path=log).stopped["1"] == ["c", "d", "e"]


@pytest.mark.parametrize("kwargs", [{"grace_period": 0}, {"grace_period": 20}, {"reduction_factor": 1}])
def test_bad_scheduler_settings(kwargs):
    with pytest.raises(ValueError):
        SuccessiveHalving(["val_error"], max_t=10, **{"grace_period": 1, "reduction_factor": 3, **kwargs})


@pytest.mark.parametrize("bad", [
    b'{"milestone": 1, "values": [0.2, 100], "stopped": false}',  # no trial_id
    b'{"milestone": 1, "trial_id": "x", "values": [0.2, 100]}',  # no stopped
    b'{"milestone": "one", "trial_id": "x", "values": [0.2, 100], "stopped": false}',
    b'{"milestone": 1' + b'0' * 400 + b', "trial_id": "x", "values": [0.2, 100], "stopped": false}',
    b'{"milestone": 1, "trial_id": "x", "values": [1' + b'0' * 400 + b', 100], "stopped": false}',
    b'{"milestone": 1, "trial_id": "x", "values": [0.2], "stopped": false}',  # another objective count
    b'{"milestone": 1, "trial_id": "x", "values": "0.2", "stopped": false}',
    b'[' * 100_000 + b']' * 100_000,
    b'\xff\xfe not utf-8',
    b'not json at all',
    b'[1, 2]',
])
def test_a_bad_decision_line_is_skipped_and_the_rest_replayed(tmp_path, bad):
    """A resume replays the good decisions around one malformed line (it raised KeyError: 'trial_id')."""
    log = tmp_path / "scheduler.jsonl"
    first = SuccessiveHalving(["val_error", "params"], max_t=9, grace_period=1, reduction_factor=3, log_path=log)
    first.decide("a", 1, (0.5, 1000))
    with open(log, "ab") as file:
        file.write(bad + b"\n")
    first.decide("c", 1, (0.6, 2000))
    restored = SuccessiveHalving(["val_error", "params"], max_t=9, grace_period=1, reduction_factor=3, log_path=log)
    assert restored.rungs["1"] == {"a": [0.5, 1000], "c": [0.6, 2000]}
    assert restored.stopped["1"] == ["c"]
