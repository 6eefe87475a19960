"""The simulated backend: a search replayed over a benchmark table by the real searcher and scheduler."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from search_helpers import run_cli, study_of, write_space
from table_fixtures import write_synthetic_table

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.results import load_curves, load_run
from wrn_search.search.schedulers import rung_milestones
from wrn_search.simulation.simulate import simulate, table_seed
from wrn_search.simulation.table import load_table
from wrn_search.spaces.space import load_space

SIM_SECTIONS = {
    "dimensions": {"widen_factor": [0.25, 0.5, 1], "block_types": ["B(3,3)", "B(3,1,3)"],
                   "lr": [0.05, 0.1]},
    "dataset": {"name": "digits", "val_fraction": 0.3},
    "training": {"epochs": 9, "batch_size": 64},
    "budget": {"max_params": None},
    "search": {"objectives": ["val_error", "params"], "sampler": "tpe", "scheduler": "moasha", "samples": 60,
               "max_concurrent": 3, "grace_period": 1, "reduction_factor": 3},
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A space over 18 configs (WRN-10, -13, -16) and its synthetic two-seed table."""
    directory = tmp_path_factory.mktemp("sim")
    space_path = write_space(directory, "sim.yaml", **SIM_SECTIONS)
    table_path = write_synthetic_table(load_space(space_path), directory / "sim.csv.gz", seeds=2)
    return directory, space_path, load_table(table_path)


def run(bench, name, **overrides):
    directory, space_path, table = bench
    workers = overrides.pop("workers", 3)
    time_budget = overrides.pop("time_budget", None)
    space = load_space(space_path).with_overrides(**overrides)
    return simulate(space, table, workers, time_budget=time_budget, name=name,
                    storage_path=str(directory / "runs")).run_dir


def test_a_replayed_trial_reports_the_tables_rows_of_its_config_and_seed(bench):
    run_dir = run(bench, "replay", seed=1)
    table = bench[2]
    seed = table_seed(table, 1)
    assert seed == 1
    curves = load_curves(run_dir)
    study = study_of(run_dir)
    assert 0 < len(study.trials) <= 60
    for trial in study.trials:
        mine = curves[curves["number"] == trial.number]
        config = {"name": trial.user_attrs["name"], "lr": trial.params["lr"]}
        recorded = table.curve(config, seed)
        start = trial.user_attrs.get("start_epoch", 0)  # a trial that continues one stopped there
        assert mine["epoch"].tolist() == list(range(start + 1, start + len(mine) + 1))
        np.testing.assert_array_equal(mine["val_error"].to_numpy(), recorded.val_error[start: start + len(mine)])
        np.testing.assert_array_equal(mine["epoch_seconds"].to_numpy(),
                                      recorded.epoch_seconds[start: start + len(mine)])
        if trial.state.name == "COMPLETE":
            assert trial.values[0] == recorded.val_error[-1] and start + len(mine) == 9


def test_simulated_time_of_a_trial_is_the_sum_of_its_recorded_epoch_seconds(bench):
    run_dir = run(bench, "clock", seed=0, workers=2)
    table = bench[2]
    frame = load_run(run_dir)
    for end in read_jsonl(run_dir / "trials.jsonl"):
        row = frame[frame["number"] == end["number"]].iloc[0]
        config = {"name": row["name"], "lr": study_of(run_dir).trials[end["number"]].params["lr"]}
        start = 0 if np.isnan(row["start_epoch"]) else int(row["start_epoch"])  # only the epochs a continuation trains
        seconds = table.curve(config, 0).epoch_seconds[start: end["epochs"]].sum()
        assert end["time"] - end["started"] == pytest.approx(seconds, abs=1e-6)
    # Two workers: never more than two trials in flight at any simulated moment.
    spans = sorted((end["started"], end["time"]) for end in read_jsonl(run_dir / "trials.jsonl"))
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 2
    simulation = json.loads((run_dir / "simulation.json").read_text())
    assert simulation["workers"] == 2 and simulation["simulated_seconds"] > 0


def test_stopped_trials_stop_at_the_schedulers_rungs(bench):
    run_dir = run(bench, "rungs", seed=2)
    frame = load_run(run_dir)
    milestones = rung_milestones(9, 1, 3)
    assert milestones == [1, 3]
    stopped = frame[frame["state"] == "PRUNED"]
    assert len(stopped) > 10
    assert set(stopped["epochs"]) <= set(milestones)
    assert set(frame[frame["state"] == "COMPLETE"]["epochs"]) == {9}


def test_the_same_seed_gives_the_same_study_and_another_seed_another(bench):
    columns = ["number", "name", "state", "val_error", "epochs", "elapsed_seconds"]

    def trials(name, seed):
        frame = load_run(run(bench, name, seed=seed))
        return frame.assign(elapsed_seconds=frame["finished"] - frame["finished"].min())[columns]

    first, again, other = trials("same-a", 4), trials("same-b", 4), trials("other", 5)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_time_and_epoch_budgets_end_the_simulation(bench):
    run_dir = run(bench, "timed", seed=0, samples=10_000, time_budget=60.0)
    ends = read_jsonl(run_dir / "trials.jsonl")
    assert max(end["time"] - end["started"] for end in ends) <= 60.0 + 1e-9
    created = min(end["started"] for end in ends)
    assert max(end["time"] for end in ends) - created <= 60.0 + 1e-9
    epochs = pd.DataFrame(read_jsonl(run_dir / "epochs.jsonl"))
    assert len(epochs) > 10 and (epochs["time"] - created).max() <= 60.0 + 1e-9
    run_dir = run(bench, "epochs", seed=0, samples=10_000, epoch_budget=40)
    spent = pd.DataFrame(read_jsonl(run_dir / "epochs.jsonl")).groupby("trial_id")["epoch"].max().sum()
    assert 40 <= spent <= 40 + 3 * 9  # running trials finish


def test_a_space_whose_grid_is_not_in_the_table_is_refused(bench, tmp_path):
    directory, _, table = bench
    bigger = write_space(tmp_path, "bigger.yaml", **{**SIM_SECTIONS, "dimensions": {
        **SIM_SECTIONS["dimensions"], "widen_factor": [0.25, 0.5, 1, 2]}})
    with pytest.raises(ValueError, match=r"WRN-10-2-B\(3,3\) lr=0.05 seed 0 is not in the table"):
        simulate(load_space(bigger), table, 2, storage_path=str(tmp_path))
    recipe = write_space(tmp_path, "recipe.yaml", **{**SIM_SECTIONS, "training": {"epochs": 20, "batch_size": 64}})
    with pytest.raises(ValueError, match="recorded with training"):
        simulate(load_space(recipe), table, 2, storage_path=str(tmp_path))
    unsearched = {key: value for key, value in SIM_SECTIONS["dimensions"].items() if key != "lr"}
    fixed = write_space(tmp_path, "fixed.yaml", **{**SIM_SECTIONS, "dimensions": unsearched})
    with pytest.raises(ValueError, match=r"varies lr, which the space does not search; .* lr: \[0.05, 0.1\]"):
        simulate(load_space(fixed), table, 2, storage_path=str(tmp_path))
    hyperband = load_space(directory / "sim.yaml").with_overrides(scheduler="hyperband")
    with pytest.raises(ValueError, match="search.scheduler: 'hyperband' is Ray's own"):
        simulate(hyperband, table, 2, storage_path=str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bigger.yaml", "fixed.yaml", "recipe.yaml"]  # no run


@pytest.mark.slow  # a real search, or CLI processes in a row
def test_bad_table_files_get_one_clear_line(bench, tmp_path):
    directory, space_path, _ = bench
    cases = {
        "wrong suffix": ("t.parquet", None, "must end in .csv or .csv.gz"),
        "no description": ("nodesc.csv", None, "nodesc.json is missing"),
        "not a table description": ("notdesc.csv", "[1, 2]", "is not a wrn-search-table-v1 table description"),
        "missing column": ("nocol.csv", "drop", "columns val_error are missing"),
        "hole in a curve": ("hole.csv", "hole", r"has epochs \[1, 2, 4"),
        "infinite seconds": ("inf.csv", ("epoch_seconds", "inf"), r"column epoch_seconds must be a finite number"),
        "negative seconds": ("neg.csv", ("epoch_seconds", -1.0), r"column epoch_seconds .* data row 1 has -1"),
        "unknown outcome": ("out.csv", ("outcome", "exploded"), r"column outcome must be one of completed, .*'exploded'"),
        "absurd epoch": ("epoch.csv", ("epoch", 10**12), r"column epoch must be an integer from 1 to 100000"),
    }
    source = directory / "sim.csv.gz"
    frame = pd.read_csv(source)
    meta = json.loads((directory / "sim.json").read_text())
    for name, (file_name, how, message) in cases.items():
        path = tmp_path / file_name
        if how == "drop":
            frame.drop(columns=["val_error"]).to_csv(path, index=False)
        elif how == "hole":
            frame[frame["epoch"] != 3].to_csv(path, index=False)
        elif isinstance(how, tuple):  # one bad value in the first row
            column, value = how
            frame.astype({column: object}).assign(**{column: [value, *frame[column].iloc[1:]]}).to_csv(path, index=False)
        else:
            frame.to_csv(path, index=False)
        if how is not None and file_name != "nodesc.csv":
            path.with_suffix(".json").write_text(how if isinstance(how, str) and how.startswith("[") else json.dumps(meta))
        result = run_cli("simulate", str(space_path), "--table", str(path), cwd=tmp_path)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wrn-search simulate: error: "), (name, lines)
        assert re.search(message, lines[0]), (name, lines)
    assert not (tmp_path / "wrn-runs").exists()


@pytest.mark.slow  # a real search, or CLI processes in a row
def test_simulate_cli_writes_a_run_that_status_pareto_and_report_read(bench, tmp_path):
    directory, space_path, _ = bench
    table = str(directory / "sim.csv.gz")
    result = run_cli("simulate", str(space_path), "--table", table, "--samples", "12", "--workers", "4",
                     "--seed", "3", "--name", "cli", "--storage-path", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trials on the front" in result.stdout
    assert result.stderr == ""  # no Optuna ExperimentalWarning or "A new study created" line
    run_dir = tmp_path / "cli"
    assert (run_dir / "report.html").stat().st_size > 1000  # like a real run, the report is written
    status = run_cli("status", str(run_dir), "--json", cwd=tmp_path)
    summary = json.loads(status.stdout)
    assert summary["trials"] == 12 and summary["resume_would"] is None and summary["table"] == table
    pareto = json.loads(run_cli("pareto", str(run_dir), "--json", cwd=tmp_path).stdout)
    assert pareto and all(row["state"] == "COMPLETE" for row in pareto)
    assert run_cli("report", str(run_dir), "-o", str(tmp_path / "r.html"), cwd=tmp_path).returncode == 0
    assert (tmp_path / "r.html").stat().st_size > 1000
    resume = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert resume.returncode == 2 and "is a simulated run" in resume.stderr
    export = run_cli("export", str(run_dir), "--pareto", cwd=tmp_path)
    assert export.returncode == 2 and "no weights were trained" in export.stderr
    again = run_cli("simulate", str(space_path), "--table", table, "--name", "cli", "--storage-path", str(tmp_path),
                    cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr
