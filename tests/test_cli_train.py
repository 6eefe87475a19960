"""``wrn-search train``: the quickstart's accuracy, output files, resume rules and failures."""

import json
import os
import subprocess
import sys

import pytest
import torch

from wrn_search.cli import main


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    """The in-process runs pass ``--threads 1``; give the rest of the session its threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train(*args: str) -> int:
    """In process, on the CPU: resumed runs repeat uninterrupted ones bit for bit there."""
    return main(["train", *args, "--threads", "1", "--device", "cpu"])


def test_quickstart_reaches_five_percent_on_digits(tmp_path):
    """The documented command, as a user runs it: WRN-10-2 on digits for 15 epochs, under 5% validation error."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "wrn_search", "train", "WRN-10-2", "--dataset", "digits", "--epochs", "15",
               "--out", str(out), "--test", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "WRN-10-2-B(3,3)" and result["epochs"] == 15 and result["outcome"] == "completed"
    assert result["params"] == 303_418
    assert result["val_error"] < 0.05 and result["test_error"] < 0.05
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "metrics.csv", "metrics.jsonl", "result.json"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, 16))
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,val_error,val_loss,lr")
    assert "WRN-10-2-B(3,3)" in done.stderr  # the progress bar


def test_out_dir_is_not_overwritten_without_resume(tmp_path, capsys, cuda_visible):
    out = str(tmp_path / "run")
    assert train("WRN-10-1", "--epochs", "1", "--out", out) == 0
    first = capsys.readouterr().out
    assert "WRN-10-1-B(3,3) on digits: 1 epochs, completed, val error" in first
    assert train("WRN-10-1", "--epochs", "1", "--out", out) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("wrn-search train: error: --out: ") and "--resume" in error[-1]
    # Resuming a finished run trains nothing more and reports the same numbers.
    assert train("WRN-10-1", "--epochs", "1", "--out", out, "--resume", "--json") == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["epochs"] == 1 and f"{100 * resumed['val_error']:.2f}%" in first
    # A different recipe does not silently restart.
    assert train("WRN-10-1", "--epochs", "2", "--out", out, "--resume") == 2
    assert "config.epochs" in capsys.readouterr().err


def test_divergence_exits_1_with_the_reason(tmp_path, capsys):
    assert train("WRN-10-1", "--epochs", "2", "--lr", "1e4", "--out", str(tmp_path), "--json", "--test") == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["outcome"] == "diverged" and result["val_error"] == 1.0 and result["test_error"] is None
    assert "diverged: non-finite" in captured.err
    assert not (tmp_path / "checkpoint.pt").exists()  # no checkpoint of a diverged epoch


@pytest.mark.parametrize(
    "args,message",
    [
        (["WRN-10-1", "--dataset", "mnist"], "dataset: unknown dataset 'mnist'"),
        (["WRN-11-1"], "depth: 11 is not"),
        (["WRN-10-1", "--epochs", "0"], "epochs: must be"),
        (["WRN-10-1", "--dataset", "cifar10", "--data-root", "{tmp}"], "dataset: cifar10 files are missing"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert train(*args, "--out", str(tmp_path / "run")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]


def test_a_net_too_big_for_the_memory_is_one_line_and_exit_1(tmp_path):
    """``wrn-search train WRN-10-1000`` died with a CPU allocator traceback. Running out of memory is
    an outcome of the run, like divergence (exit 1), not bad input (exit 2): the same net may fit elsewhere."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "wrn_search", "train", "WRN-10-1000", "--epochs", "1",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("wrn-search train: out_of_memory: out of memory for WRN-10-1000-B(3,3): its "
                                  "73,987,648,186 params alone need 826 GiB")
    assert done.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("where", ["load_checkpoint", "evaluate"])
def test_out_of_memory_when_resuming_or_testing_is_one_line(tmp_path, monkeypatch, capsys, where):
    """A checkpoint restored, or the test set evaluated, on a device without room: an outcome, exit 1."""
    import wrn_search.training.device
    import wrn_search.training.engine

    out = tmp_path / "run"
    assert main(["train", "WRN-10-1", "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0

    def no_room(self, *args, **kwargs):
        raise wrn_search.training.device.OutOfMemory("out of memory for WRN-10-1-B(3,3): no room")

    monkeypatch.setattr(wrn_search.training.engine.Trainer, where, no_room)
    capsys.readouterr()
    argv = ["train", "WRN-10-1", "--epochs", "1", "--out", str(out), "--device", "cpu", "--resume", "--test"]
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "wrn-search train: out_of_memory: out of memory for WRN-10-1-B(3,3): no room")
