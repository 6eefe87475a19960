"""Recording a benchmark table on a real local Ray: every grid config x seed, resumable, then simulated."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from search_helpers import run_cli, write_space
from table_fixtures import write_synthetic_table

from wrn_search.runs.files import append_jsonl
from wrn_search.simulation.table import load_table
from wrn_search.spaces.space import load_space

#: Every test here starts Ray or a search (the fast loop, ``pytest -m "not slow"``, leaves them out).
pytestmark = pytest.mark.slow

TINY = {
    "dimensions": {"depth": [10], "widen_factor": [0.25, 0.5], "block_types": ["B(3,3)"], "lr": [0.05, 0.1]},
    "dataset": {"name": "digits", "val_fraction": 0.3},
    "training": {"epochs": 2, "batch_size": 128},
    "budget": {"max_params": None},
    "search": {"samples": 6, "grace_period": 1, "reduction_factor": 2},
}


def test_tabulate_records_every_config_and_seed_resumes_and_feeds_simulate(tmp_path):
    space = write_space(tmp_path, "tiny.yaml", **TINY)
    out = tmp_path / "tiny.csv.gz"
    first = run_cli("tabulate", str(space), "--seeds", "1", "--out", str(out), "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "4 of 4 curves to train (0 recorded)" in first.stdout
    table = load_table(out)
    assert table.seeds == (0,) and len(table.curves) == 4 and len(table.frame) == 8
    assert set(table.frame["name"]) == {"WRN-10-0.25-B(3,3)", "WRN-10-0.5-B(3,3)"}
    assert set(table.frame["lr"]) == {0.05, 0.1} and set(table.frame["epoch"]) == {1, 2}
    assert (table.frame["epoch_seconds"] > 0).all() and table.frame["val_error"].between(0, 1).all()
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["recorded"]["curves"] == 4 and meta["space"]["training"]["epochs"] == 2
    assert not (tmp_path / "tiny.partial.jsonl").exists() and not list(tmp_path.glob(".tabulate-*"))

    # As if killed after training but before writing the table: the fsynced log holds the curves.
    shutil.move(out, tmp_path / "saved.csv.gz")
    for record in pd.read_csv(tmp_path / "saved.csv.gz").to_dict("records"):
        append_jsonl(tmp_path / "tiny.partial.jsonl", record)
    again = run_cli("tabulate", str(space), "--seeds", "1", "--out", str(out), "--quiet", cwd=tmp_path)
    assert again.returncode == 0 and "0 of 4 curves to train (4 recorded)" in again.stdout
    pd.testing.assert_frame_equal(load_table(out).frame, table.frame)

    more = run_cli("tabulate", str(space), "--seeds", "2", "--out", str(out), "--quiet", cwd=tmp_path)
    assert more.returncode == 0 and "4 of 8 curves to train (4 recorded)" in more.stdout
    grown = load_table(out)
    assert grown.seeds == (0, 1) and len(grown.curves) == 8
    pd.testing.assert_frame_equal(grown.frame[grown.frame["seed"] == 0].reset_index(drop=True), table.frame)

    simulated = run_cli("simulate", str(space), "--table", str(out), "--samples", "6", "--workers", "2",
                        "--storage-path", str(tmp_path / "runs"), "--name", "sim", cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert (tmp_path / "runs" / "sim" / "pareto.csv").is_file()


def test_tabulate_refuses_continuous_axes_and_bad_outputs_before_writing(tmp_path):
    space = write_space(tmp_path, "cont.yaml", **{**TINY, "dimensions": {**TINY["dimensions"],
                                                                        "lr": {"min": 0.01, "max": 0.1}}})
    result = run_cli("tabulate", str(space), "--out", str(tmp_path / "t.csv"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"wrn-search tabulate: error: {space}: tabulate needs a discrete grid, but lr "
                                     "is a continuous range; give choices (or a step)")
    space = write_space(tmp_path, "tiny.yaml", **TINY)
    result = run_cli("tabulate", str(space), "--out", str(tmp_path / "t.parquet"), cwd=tmp_path)
    assert result.returncode == 2 and "must end in .csv or .csv.gz" in result.stderr
    result = run_cli("tabulate", str(space), "--seeds", "0", "--out", str(tmp_path / "t.csv"), cwd=tmp_path)
    assert result.returncode == 2 and "--seeds: must be an integer >= 1, got 0" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cont.yaml", "tiny.yaml"]
    existing = write_synthetic_table(load_space(space), tmp_path / "t.csv.gz", seeds=1)
    longer = write_space(tmp_path, "longer.yaml", **{**TINY, "training": {"epochs": 3, "batch_size": 128}})
    before = existing.read_bytes()
    result = run_cli("tabulate", str(longer), "--out", str(existing), cwd=tmp_path)
    assert result.returncode == 2 and "recorded with training epochs=2" in result.stderr
    assert existing.read_bytes() == before and not (tmp_path / "t.partial.jsonl").exists()
