"""load_run / load_curves / write_results on run directories of finished, running and killed runs."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from run_fixtures import FakeTrial, load_study, make_run

from wrn_search.results import COLUMNS, load_curves, load_run, study_storage, write_results
from wrn_search.rundir import RunManifest


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "run")


def test_one_row_per_study_trial_with_the_study_values(run_dir):
    frame = load_run(run_dir).set_index("number")
    study = load_study(run_dir)
    assert list(load_run(run_dir).columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(frame.index) == [t.number for t in study.trials]
    for trial in study.trials:
        row = frame.loc[trial.number]
        assert row["state"] == trial.state.name
        assert row["name"] == trial.user_attrs["name"]
        assert row["params"] == trial.user_attrs["params"] and row["macs"] == trial.user_attrs["macs"]
        if trial.values is not None:
            assert row["val_error"] == trial.values[0]
    assert frame.loc[5, "outcome"] == "stopped_early" and frame.loc[5, "epochs"] == 1
    assert frame.loc[6, "outcome"] == "diverged"
    assert frame.loc[0, "epochs"] == 3 and frame.loc[0, "wall_seconds"] == pytest.approx(1.5)
    assert frame.loc[0, "elapsed_seconds"] > 0 and frame["feasible"].all()


def test_running_trial_shows_its_latest_epoch(run_dir):
    row = load_run(run_dir).set_index("number").loc[7]
    assert (row["state"], row["outcome"], row["epochs"]) == ("RUNNING", "running", 2)
    assert row["val_error"] == pytest.approx(0.50)  # its epoch-2 line, not yet told to the study
    assert pd.isna(row["finished"])


def test_resumed_run_keeps_the_latest_attempt_and_skips_a_torn_line(run_dir):
    lines = (run_dir / "epochs.jsonl").read_text().splitlines()
    retry = [json.loads(line) for line in lines if json.loads(line)["number"] == 7][:1]
    retry[0]["val_error"] = 0.77
    with open(run_dir / "epochs.jsonl", "a") as log:
        log.write(json.dumps(retry[0]) + "\n")  # trial 7 restarted from epoch 1 after a kill
        log.write('{"trial_id": "7a1b2_00007", "number": 7, "ep')  # torn by the kill
    curves = load_curves(run_dir)
    again = curves[curves["number"] == 7]
    assert list(again["epoch"]) == [1] and list(again["val_error"]) == [0.77]
    assert not curves.duplicated(["number", "epoch"]).any()
    assert len(curves[curves["number"] == 0]) == 3
    row = load_run(run_dir).set_index("number").loc[7]
    assert row["epochs"] == 1 and row["val_error"] == 0.77


def test_repeated_epoch_keeps_the_last_line(run_dir):
    with open(run_dir / "epochs.jsonl", "a") as log:
        log.write(json.dumps({"trial_id": "7a1b2_00007", "number": 7, "epoch": 2, "val_error": 0.42,
                              "epoch_seconds": 0.5, "time": 0.0}) + "\n")
    curves = load_curves(run_dir)
    assert list(curves[curves["number"] == 7]["val_error"]) == [pytest.approx(0.55), 0.42]


def test_write_results_matches_study_best_trials(run_dir):
    results, pareto = write_results(run_dir)
    table, front = pd.read_csv(results), pd.read_csv(pareto)
    assert len(table) == 8
    for column in ("trial_id", "name", "params", "macs", "val_error", "epochs", "state", "outcome"):
        assert column in table and column in front
    assert sorted(front["number"]) == sorted(t.number for t in load_study(run_dir).best_trials)


def test_moved_run_reads_its_own_study_db(tmp_path, run_dir):
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)
    assert study_storage(moved, RunManifest.load(moved)) == f"sqlite:///{moved / 'study.db'}"
    assert len(load_run(moved)) == 8


def test_empty_run_and_missing_run(tmp_path):
    empty = make_run(tmp_path / "empty", trials=())
    assert load_run(empty).empty and load_curves(empty).empty
    with pytest.raises(ValueError, match="not a wrn-search run"):
        load_run(tmp_path)


def test_infeasible_trial_is_marked(tmp_path):
    run = make_run(tmp_path / "c", trials=(FakeTrial("WRN-10-1", 0.2, constraint=1.0), FakeTrial("WRN-16-1", 0.3)))
    assert list(load_run(run)["feasible"]) == [False, True]
