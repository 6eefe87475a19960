"""The Pareto set equals Optuna's study.best_trials; hypervolume is exact; the pareto CLI prints the front."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from optuna._hypervolume import compute_hypervolume
from run_fixtures import FakeTrial, load_study, make_run

from wrn_search.cli import main
from wrn_search.pareto import hypervolume, hypervolume_history, non_dominated, pareto_front, reference_point
from wrn_search.runs.results import load_run

NAMES = ["WRN-10-1", "WRN-16-1", "WRN-10-2", "WRN-16-2", "WRN-13-1-B(3,1,3)"]


def random_trials(seed: int, count: int) -> tuple[FakeTrial, ...]:
    """Few names and errors on a coarse grid, so ties and exact duplicates are common."""
    rng = random.Random(seed)
    return tuple(
        FakeTrial(rng.choice(NAMES), rng.choice([0.1, 0.2, 0.3]), *rng.choice(
            [("COMPLETE", "completed")] * 4 + [("PRUNED", "stopped_early"), ("FAIL", "error")]))
        for _ in range(count)
    )


STUDIES = {
    "single": (FakeTrial("WRN-16-1", 0.2),),
    "single-pruned": (FakeTrial("WRN-16-1", 0.2, "PRUNED", "stopped_early", 1),),
    "all-duplicates": (FakeTrial("WRN-16-1", 0.2),) * 3,
    "duplicate-on-front": (FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-16-1", 0.3),
                           FakeTrial("WRN-16-1", 0.1)),
    "equal-error": (FakeTrial("WRN-10-1", 0.2), FakeTrial("WRN-16-1", 0.2), FakeTrial("WRN-10-2", 0.2)),
    **{f"random-{seed}": random_trials(seed, 14) for seed in range(4)},
}


@pytest.mark.parametrize("trials", STUDIES.values(), ids=STUDIES.keys())
@pytest.mark.parametrize("objectives", [("val_error", "params"), ("val_error", "params", "macs")], ids=["2d", "3d"])
def test_front_equals_optuna_best_trials_once_per_net(tmp_path, trials, objectives):
    """Optuna's best_trials, with the trials of one net at the same values kept once (the first)."""
    run = make_run(tmp_path / "run", trials, objectives=objectives)
    front = pareto_front(load_run(run), objectives)
    best = load_study(run).best_trials
    first: dict[tuple, int] = {}
    for trial in sorted(best, key=lambda t: t.number):
        first.setdefault((trial.user_attrs["name"], *trial.values), trial.number)
    assert sorted(front["number"]) == sorted(first.values())
    assert front["name"].is_unique and front["ties"].sum() == len(best) - len(front)


def test_front_lists_each_net_once_and_counts_its_ties(tmp_path):
    trials = (FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-10-1", 0.3),
              FakeTrial("WRN-10-1-B(3,3)-d0.3", 0.3),  # another net (same params): listed too
              FakeTrial("WRN-16-1", 0.1, "PRUNED", "stopped_early"), FakeTrial("WRN-16-1", 0.1),
              FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-16-1", 0.2))
    frame = load_run(make_run(tmp_path / "run", trials))
    front = pareto_front(frame)
    assert list(front["number"]) == [0, 2, 4] and list(front["ties"]) == [2, 0, 0]
    # Stopped trials compete when asked; a COMPLETE trial stands for its net before a stopped one.
    front = pareto_front(frame, include_early_stopped=True)
    assert list(front["number"]) == [0, 2, 4] and list(front["ties"]) == [2, 0, 1]
    assert pareto_front(frame.iloc[:0])["ties"].tolist() == []


def test_front_is_sorted_by_cost_and_excludes_early_stopped_by_default(tmp_path):
    trials = (FakeTrial("WRN-16-2", 0.1), FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-16-1", 0.05, "PRUNED", "stopped_early", 1))
    frame = load_run(make_run(tmp_path / "run", trials))
    assert list(pareto_front(frame)["number"]) == [1, 0]
    assert list(pareto_front(frame, include_early_stopped=True)["number"]) == [1, 2]
    assert list(pareto_front(frame, ("val_error", "macs"))["number"]) == [1, 0]


def test_non_dominated_keeps_exact_duplicates_and_drops_weakly_dominated():
    points = np.array([[1, 2], [1, 2], [1, 3], [2, 1], [3, 3]])
    assert list(non_dominated(points)) == [True, True, False, True, False]


def test_hypervolume_by_hand():
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), (3.0, 3.0)) == 3.0
    assert hypervolume(np.array([[4.0, 0.0]]), (3.0, 3.0)) == 0.0  # beyond the reference: no volume
    assert hypervolume(np.empty((0, 2)), (1.0, 1.0)) == 0.0
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), (1.0, 2.0, 3.0)) == 6.0
    with pytest.raises(ValueError, match="1 to 3"):
        hypervolume(np.zeros((1, 4)), (1, 1, 1, 1))


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_matches_optuna_wfg(dims):
    rng = np.random.default_rng(dims)
    for _ in range(20):
        points = rng.integers(0, 6, size=(rng.integers(1, 25), dims)).astype(float)
        reference = np.full(dims, 6.0)
        assert hypervolume(points, reference) == pytest.approx(compute_hypervolume(points, reference))


def test_hypervolume_history_is_monotone_and_ends_at_the_front(tmp_path):
    frame = load_run(make_run(tmp_path / "run", STUDIES["random-0"]))
    columns = ["val_error", "params"]
    reference = reference_point(frame, columns)
    history = hypervolume_history(frame, columns, reference)
    assert reference[0] == 1.0 and reference[1] == pytest.approx(1.1 * frame["params"].max())
    assert len(history) == (frame["state"] == "COMPLETE").sum()
    assert np.all(np.diff(history["hypervolume"]) >= 0) and np.all(np.diff(history["best_val_error"]) <= 0)
    front = pareto_front(frame, columns)
    assert history["hypervolume"].iloc[-1] == pytest.approx(hypervolume(front[columns].to_numpy(float), reference))
    assert 0 < history["hypervolume_fraction"].iloc[-1] <= 1


def test_pareto_cli_json_table_and_csv(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["pareto", str(run), "--json", "--csv", str(tmp_path / "front.csv")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rows] == [0, 1, 3]
    assert {"trial_id", "name", "params", "macs", "val_error"} <= set(rows[0])
    assert list(pd.read_csv(tmp_path / "front.csv")["number"]) == [0, 1, 3]
    assert main(["pareto", str(run), "--x", "macs"]) == 0
    out = capsys.readouterr().out
    assert "WRN-16-2-B(3,3)" in out and "3 of 8 trials on the front (1 stopped early" in out and "hypervolume" in out
    assert "same net" not in out and rows[0]["ties"] == 0


def test_pareto_cli_marks_a_net_trained_twice(tmp_path, capsys):
    trials = (FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-16-1", 0.1), FakeTrial("WRN-10-1", 0.3),
              FakeTrial("WRN-10-1", 0.3))
    run = make_run(tmp_path / "run", trials)
    assert main(["pareto", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["0", "WRN-10-1-B(3,3)"] and lines[1].endswith("(+2 same net, same values)")
    assert lines[2].split()[:2] == ["1", "WRN-16-1-B(3,3)"] and "same net" not in lines[2]
    assert lines[3].startswith("2 of 4 trials on the front, 2 more that repeat a net on it with the same values (0 ")


def test_pareto_cli_bad_run_dir_is_exit_2(tmp_path, capsys):
    assert main(["pareto", str(tmp_path)]) == 2
    assert "not a wrn-search run" in capsys.readouterr().err
