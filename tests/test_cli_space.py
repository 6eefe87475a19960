"""``wrn-search space``: the summary, its JSON form, and errors as one line with exit code 2."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from wrn_search.cli import main
from wrn_search.spaces.space import load_space


def test_text_summary(capsys):
    assert main(["space", "quickstart"]) == 0
    out = capsys.readouterr().out
    space = load_space("quickstart")
    assert out.startswith("search space quickstart\n")
    assert f"feasible architectures: {space.feasible_count}\n" in out  # only the architecture is searched
    assert "smallest:  WRN-10-0.125-B(3,3)" in out and "params histogram:" in out
    assert '"samples": 30, "epoch_budget": null' in out  # the search settings line


def test_json_summary(capsys):
    assert main(["space", "cifar10-2m", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    space = load_space("cifar10-2m")
    params = sorted(space.cost(spec)[0] for spec in space.architectures())
    assert summary["feasible_count"] == space.feasible_count == len(params)
    assert (summary["min_params"], summary["max_params"]) == (params[0], params[-1])
    assert summary["smallest"]["params"] == params[0] and summary["largest"]["params"] == params[-1]
    assert 500_000 <= params[0] and params[-1] <= 2_000_000
    assert sum(row["count"] for row in summary["histogram"]) == len(params)
    assert summary["continuous"] == ["lr"] and summary["search"]["scheduler"] == "moasha"


def test_single_architecture_histogram(capsys, tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("architectures: [WRN-16-4]\n")
    assert main(["space", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["histogram"] == [{"low": 2748890, "high": 2748890, "count": 1}]
    assert summary["feasible_count"] == 1 and summary["architectures"] == ["WRN-16-4-B(3,3)"]


def test_bad_space_is_one_line_and_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dimensions: {depth: [16], widen_factor: [1]}\nsearch: {sampler: cmaes}\n")
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"wrn-search space: error: {path}: search.sampler: 'cmaes' is not one of tpe, nsga2, random, grid, " \
                  "gp, qmc\n"


def test_ready_space_by_name_from_any_directory(tmp_path):
    """The installed entry point finds ready spaces through importlib.resources, not the working directory."""
    script = shutil.which("wrn-search", path=os.path.dirname(sys.executable))
    done = subprocess.run([script, "space", "paper-block-types"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "feasible architectures: 6" in done.stdout and "WRN-31-2-B(3,1,3)" in done.stdout


def test_bad_training_is_refused_before_a_run_directory_exists(capsys, tmp_path):
    """``training: {batch_size: 0}`` used to create the run and fail every trial three times."""
    path = tmp_path / "bad.yaml"
    path.write_text("dimensions: {depth: [10], widen_factor: [1]}\ndataset: {name: digits}\n"
                    "training: {epochs: 1, batch_size: 0}\n")
    message = f"{path}: training.batch_size: must be an integer from 1 to 1,048,576, got 0\n"
    assert main(["space", str(path)]) == 2
    assert capsys.readouterr().err == f"wrn-search space: error: {message}"
    storage = tmp_path / "runs"
    assert main(["run", str(path), "--storage-path", str(storage), "--quiet"]) == 2
    assert capsys.readouterr().err == f"wrn-search run: error: {message}"
    assert not storage.exists()


def test_yaml_nested_200k_deep_is_one_line_and_exit_2(tmp_path):
    """It used to end in a RecursionError traceback."""
    path = tmp_path / "deep.yaml"
    path.write_text("dimensions: " + "[" * 200_000)
    done = subprocess.run([sys.executable, "-m", "wrn_search", "space", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"wrn-search space: error: {path}: not valid YAML: nested more than 20 levels")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["WRN-" + "1" * 400 + "-10"], "depth: at most 60,004 for B(3,3), got 1"),
    (["WRN-100000000-10"], "depth: at most 60,004 for B(3,3), got 100000000"),
    (["WRN-28-2000"], "widen_factor: must be a number in (0, 1000], got 2000"),
    (["WRN-28-10-B(3,33)"], "kernel sizes must be odd integers from 1 to 31, got 33"),
    (["WRN-28-10", "--classes", "1" * 400], "--classes: must be an integer from 1 to 1,000,000, got 1"),
    (["WRN-28-10", "--input-size", "100000"], "--input-size: must be an integer from 8 to 65,536, got 100000"),
])
def test_count_refuses_absurd_sizes_in_one_line(capsys, args, message):
    """Each used to print a table of 400-digit numbers (or an overflow)."""
    assert main(["count", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and len(err) < 300, err
