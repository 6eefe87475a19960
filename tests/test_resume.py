"""Faults: a killed driver, a crashed worker, a lost node, diverging trials, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pandas as pd
import psutil
import pytest
import ray
from ray.cluster_utils import Cluster
from search_helpers import LOOPBACK_NODE, run_cli, start_local_ray, study_of, wait_for, write_space

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.lock import LOCK_FILE, run_dir_lock
from wrn_search.search.orchestrate import run_search
from wrn_search.spaces.space import load_space

#: Every test here starts Ray or a search (the fast loop, ``pytest -m "not slow"``, leaves them out).
pytestmark = pytest.mark.slow


def start_cli(tmp_path, *args) -> subprocess.Popen:
    """``wrn-search ARGS`` in its own process group (the Ray processes it starts join it), output captured."""
    return subprocess.Popen([sys.executable, "-m", "wrn_search", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass  # everything in it has exited


def signal_group(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    """Send ``signum`` to the process and the Ray processes it started; its exit code and stderr."""
    try:
        kill_group(process, signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        kill_group(process)  # what outlived a graceful stop
    return process.returncode, stderr


def reached(run_dir) -> dict[int, int]:
    """The highest epoch each study trial has logged: each one has a checkpoint on storage."""
    reached: dict[int, int] = {}
    for record in read_jsonl(run_dir / "epochs.jsonl"):
        reached[record["number"]] = max(reached.get(record["number"], 0), record["epoch"])
    return reached


#: Three learning rates: the default test space has four nets, and a study trains each configuration once.
MORE_CONFIGURATIONS = {"lr": [0.02, 0.05, 0.1]}


def assert_continued(run_dir, before: dict[int, int], lines_before: int) -> None:
    """No trial that had logged an epoch before a kill trains that epoch, or any earlier one, again, or logs it
    again (a trial that had trained its last epoch but was not yet recorded as finished reports it once more)."""
    after = read_jsonl(run_dir / "epochs.jsonl")[lines_before:]
    for number, epoch in before.items():
        again = [r["epoch"] for r in after if r["number"] == number]
        assert not again or again[0] > epoch, f"trial {number} reached epoch {epoch}, then logged {again}"


def test_kills_interrupts_and_a_lagging_snapshot_lose_no_work(tmp_path):
    """Kill the driver as the run directory appears, Ctrl-C a resume, kill the next resume and roll its
    Ray snapshot back to an older one: every trial ends COMPLETE, none trains an epoch twice."""
    samples, epochs = 6, 8
    space = write_space(tmp_path, training={"epochs": epochs}, search={"samples": samples, "scheduler": "none"},
                        dimensions=MORE_CONFIGURATIONS)
    run_dir = tmp_path / "runs" / "killed"
    run = ["run", str(space), "--name", "killed", "--storage-path", "runs", "--quiet"]

    run_dir.mkdir(parents=True)
    (run_dir / "space.yaml").write_text("dimensions: {dep")  # a kill before run.json: not a run yet
    driver = start_cli(tmp_path, *run)
    wait_for(lambda: (run_dir / "run.json").exists(), 120, "the run directory")
    signal_group(driver, signal.SIGKILL)
    assert not (run_dir / "epochs.jsonl").exists()
    assert run_cli(*run, cwd=tmp_path).returncode == 2  # the directory exists: resume it

    # Ctrl-C: Tune stops, the results reflect what finished, and the exit code says interrupted.
    resume = start_cli(tmp_path, "resume", str(run_dir))
    wait_for(lambda: len(read_jsonl(run_dir / "trials.jsonl")) >= 2 and set(reached(run_dir))
             - {r["number"] for r in read_jsonl(run_dir / "trials.jsonl")}, 240, "finished and running trials")
    code, stderr = signal_group(resume, signal.SIGINT)
    finished = {r["number"] for r in read_jsonl(run_dir / "trials.jsonl")}
    unfinished = len(study_of(run_dir).trials) - len(finished)
    assert code == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"wrn-search resume: interrupted: {len(finished)} of {samples} trials finished, {unfinished} unfinished; "
        f"continue with: wrn-search resume {run_dir}")
    results = pd.read_csv(run_dir / "results.csv")
    assert set(results.loc[results["state"] == "COMPLETE", "number"]) == finished

    # A kill during a resume, after which Ray's newest snapshot is one taken before the last checkpoints.
    before, lines_before = reached(run_dir), len(read_jsonl(run_dir / "epochs.jsonl"))
    resume = start_cli(tmp_path, "resume", str(run_dir))
    wait_for(lambda: len(read_jsonl(run_dir / "epochs.jsonl")) > lines_before, 240, "a resumed epoch")
    snapshot = max((run_dir / "tune").glob("experiment_state-*.json"))
    old_snapshot = snapshot.read_text()
    wait_for(lambda: len(read_jsonl(run_dir / "epochs.jsonl")) > lines_before + 6, 240, "more epochs")
    signal_group(resume, signal.SIGKILL)
    assert_continued(run_dir, before, lines_before)
    max((run_dir / "tune").glob("experiment_state-*.json")).write_text(old_snapshot)

    # One writer at a time: a resume while another process holds the run directory is refused.
    with run_dir_lock(run_dir, "a test"):
        refused = run_cli("resume", str(run_dir), cwd=tmp_path)
        since = json.loads((run_dir / LOCK_FILE).read_text())["since"]
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"wrn-search resume: error: run_dir: {run_dir} is in use by pid {os.getpid()} "
                                      f"on {socket.gethostname()} (a test, since {since}); wait for it to end or "
                                      "stop it, then try again")

    before, lines_before = reached(run_dir), len(read_jsonl(run_dir / "epochs.jsonl"))
    resumed = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "FileNotFoundError" not in resumed.stderr and "does not exist on storage" not in resumed.stderr
    assert_continued(run_dir, before, lines_before)
    study = study_of(run_dir)
    assert len(study.trials) == samples and all(t.state.name == "COMPLETE" for t in study.trials)
    results = pd.read_csv(run_dir / "results.csv")
    assert (results["epochs"] == epochs).all() and set(results["number"]) == set(range(samples))


def test_a_crashed_worker_is_retried_from_its_checkpoint(tmp_path):
    """SIGKILL a trial's worker process mid-training: Tune retries it from its checkpoint."""
    space = write_space(tmp_path, training={"epochs": 6}, search={"samples": 2, "scheduler": "none",
                                                                  "max_concurrent": 1})
    run_dir = tmp_path / "runs" / "crash"
    killed: list[int] = []

    def kill_the_training_worker():
        try:
            wait_for(lambda: reached(run_dir).get(0, 0) >= 2, 120, "trial 0 at epoch 2")
        except AssertionError:
            return
        for worker in psutil.process_iter(["cmdline"]):
            if "ImplicitFunc" in " ".join(worker.info["cmdline"] or []):
                worker.kill()
                killed.append(worker.pid)

    killer = threading.Thread(target=kill_the_training_worker, daemon=True)
    start_local_ray()
    try:
        killer.start()
        run_search(load_space(space), name="crash", storage_path=str(tmp_path / "runs"), verbose=0)
    finally:
        killer.join(timeout=10)
        ray.shutdown()
    assert killed, "no trial worker was found to kill"
    trials = study_of(run_dir).trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    epochs = [r["epoch"] for r in read_jsonl(run_dir / "epochs.jsonl") if r["number"] == 0]
    assert epochs[0] == 1 and epochs.count(1) == 1 and epochs[-1] == 6  # continued from a checkpoint
    assert list((run_dir / "tune").glob("00000-*/error.txt")), "Tune never saw the worker die"


def test_losing_a_node_mid_search(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **LOOPBACK_NODE})
    worker = cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK_NODE["node_ip_address"])
    run_dir = tmp_path / "runs" / "node-loss"
    removed = threading.Event()

    def remove_worker_once_it_trains():
        def worker_is_training() -> bool:
            return any(r.get("node_id") == worker.node_id for r in read_jsonl(run_dir / "epochs.jsonl"))
        try:
            wait_for(worker_is_training, 120, "a trial on the worker node")
        except AssertionError:
            return
        cluster.remove_node(worker)
        removed.set()

    remover = threading.Thread(target=remove_worker_once_it_trains, daemon=True)
    remover.start()
    try:
        space = write_space(tmp_path, training={"epochs": 6}, search={"samples": 6, "scheduler": "none"},
                            dimensions=MORE_CONFIGURATIONS)
        run_search(load_space(space), name="node-loss", storage_path=str(tmp_path / "runs"),
                   address=cluster.address, verbose=0)
    finally:
        remover.join(timeout=10)
        ray.shutdown()
        cluster.shutdown()
    assert removed.is_set()
    trials = study_of(run_dir).trials
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 5
    assert len(read_jsonl(run_dir / "trials.jsonl")) == 6


def test_diverging_trials_are_marked_and_the_rest_finish(tmp_path):
    space = write_space(tmp_path, dimensions={"depth": [10], "widen_factor": [1], "block_types": ["B(3,3)"],
                                              "lr": [0.05, 10000.0]},
                        training={"epochs": 3}, search={"samples": 6, "scheduler": "none", "sampler": "grid"})
    start_local_ray()
    try:
        run_dir = run_search(load_space(space), name="diverge", storage_path=str(tmp_path / "runs"), verbose=0).run_dir
    finally:
        ray.shutdown()
    trials = study_of(run_dir).trials
    assert len(trials) == 2
    by_lr = {t.params["lr"]: t for t in trials}
    assert by_lr[10000.0].state.name == "FAIL" and by_lr[10000.0].user_attrs["outcome"] == "diverged"
    assert by_lr[0.05].state.name == "COMPLETE"
    results = pd.read_csv(run_dir / "results.csv")
    assert set(results["outcome"]) == {"diverged", "completed"}


def test_resume_and_status_reject_what_is_not_a_run(tmp_path):
    (tmp_path / "plain").mkdir()
    for command in ("resume", "status"):
        result = run_cli(command, str(tmp_path / "plain"), cwd=tmp_path)
        assert result.returncode == 2 and "not a wrn-search run" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    future = tmp_path / "future"
    future.mkdir()
    (future / "run.json").write_text(json.dumps({"format_version": 99, "name": "x"}))
    result = run_cli("resume", str(future), cwd=tmp_path)
    assert result.returncode == 2 and "format 99" in result.stderr
    assert os.listdir(future) == ["run.json"]  # nothing written


def test_a_full_disk_stops_the_run_in_one_line_and_resume_continues(tmp_path):
    space = write_space(tmp_path, training={"epochs": 4}, search={"samples": 4, "scheduler": "none"})
    run_dir = tmp_path / "runs" / "full"
    driver = start_cli(tmp_path, "run", str(space), "--name", "full", "--storage-path", "runs", "--quiet")
    try:
        wait_for(lambda: len(read_jsonl(run_dir / "trials.jsonl")) >= 1, 240, "a finished trial")
        log = run_dir / "epochs.jsonl"
        kept = log.read_bytes()
        log.unlink()
        log.symlink_to("/dev/full")  # every write to the epoch log now fails with ENOSPC
        _, stderr = driver.communicate(timeout=240)
    finally:
        kill_group(driver)
    assert driver.returncode == 2
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines[-1] == (f"wrn-search run: error: run_dir: cannot write {run_dir} (No space left on device); finished "
                         f"trials are kept: make room (or make it writable) and continue with "
                         f"`wrn-search resume {run_dir}`")
    assert len([line for line in lines if not line.startswith("[I ")]) == 1, stderr[-3000:]  # Optuna's info aside
    log.unlink()
    log.write_bytes(kept)
    resumed = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = study_of(run_dir).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
