"""The benchmark harness: the cost_model and a tiny loader benchmark through the CLI's code path, JSON rows, and
the Ray benchmarks' own searches."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks import loader, run, train_step  # noqa: E402

FIELDS = {"name": str, "ours": float, "baseline": float, "unit": str, "ratio": float, "device": str,
          "workload": str, "checks": dict, "details": dict}


def check_row(row: dict, name: str) -> None:
    assert row["name"] == name
    for field, kind in FIELDS.items():
        assert isinstance(row[field], kind), field
    assert row["ours"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
    assert row["checks"] and all(isinstance(value, bool) for value in row["checks"].values())


def test_cost_model_through_the_cli(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert run.main(["--quick", "--only", "cost_model", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1
    check_row(rows[0], "cost_model")
    assert rows[0]["checks"] == {"counts_agree_on_every_spec": True}
    table = capsys.readouterr().out
    assert table.splitlines()[0].split(" | ")[0].strip() == "figure" and "cost_model (specs/s)" in table


def test_tiny_loader_benchmark(monkeypatch):
    monkeypatch.setattr(run, "BENCHMARKS", {"loader": lambda quick, threads: loader.run(quick, threads, images=500)})
    (row,) = run.run_benchmarks(["loader"], quick=True, threads=1)
    check_row(json.loads(json.dumps(row.to_dict())), "loader")
    assert row.checks["ours_pixels_are_exact_crop_flips"] and row.checks["baseline_pixels_are_exact_crop_flips"]
    assert row.unit == "images/s"


@pytest.mark.parametrize("bad", [["--only", "nope"], ["--threads", "x"]])
def test_bad_arguments(bad):
    with pytest.raises(SystemExit):
        run.main(bad)


def test_train_step_times_throughput_on_a_gpu():
    """On a GPU, 1-2 step epochs and one 2048^2 matmul per sync timed launches and syncs."""
    gpu = train_step.timing(torch.device("cuda"), quick=True)
    assert gpu.steps >= 50 and gpu.matmul_size >= 8192 and gpu.matmul_iterations >= 10
    cpu = train_step.timing(torch.device("cpu"), quick=False)
    assert (cpu.steps, cpu.repeats, cpu.matmul_size, cpu.matmul_iterations) == (2, 5, 2048, 1)


def test_matmul_peak_counts_every_iteration(monkeypatch):
    calls = []
    matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: calls.append(1) or matmul(a, b))
    flops = train_step.matmul_flops(torch.device("cpu"), torch.float32, size=32, iterations=3)
    assert flops > 0 and len(calls) == 3 * 11  # 10 timed calls after one warm-up, 3 matmuls each


def test_the_ray_benchmarks_read_a_real_search(local_ray, tmp_path, monkeypatch):
    """search_efficiency and trial_overhead drive run_search itself: a tiny real search through each."""
    from search_helpers import write_space

    from benchmarks import search_efficiency, trial_overhead
    from wrn_search.spaces.space import load_space

    space = load_space(write_space(tmp_path, search={"samples": 2, "max_concurrent": 1}))
    trials, cutoff = search_efficiency.search(space, tmp_path / "efficiency", "tiny", epoch_budget=4)
    assert len(trials) == 2 and cutoff > 0
    monkeypatch.setattr(trial_overhead, "TRIALS", 2)
    measured = trial_overhead.ours(tmp_path)
    assert measured["trials"] == 2 and measured["wall_s"] > measured["training_s"] > 0


@pytest.mark.parametrize("name", ["trial_overhead", "cluster_driver"])
def test_a_ray_benchmark_space_has_a_configuration_for_each_trial(tmp_path, name):
    """A study never trains a configuration twice: a space smaller than the trials ends the search early."""
    import importlib

    import yaml

    from wrn_search.spaces.space import load_space

    module = importlib.import_module(f"benchmarks.{name}")
    trials = module.TRIALS if name == "trial_overhead" else max(module.TRIALS.values())
    document = module.space_document() if name == "trial_overhead" else module.space_document(trials)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(document))
    assert len(list(load_space(path).grid_configs())) >= trials


def test_cluster_driver_counts_the_trials_running_at_once():
    from benchmarks.cluster_driver import most_running

    assert most_running([0.0, 1.0, 2.0, 5.0], [3.0, 4.0, 6.0, 7.0]) == 3
