"""Faults: a killed driver, a crashed worker, a lost node, diverging trials, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import ray
from ray.cluster_utils import Cluster

from search_helpers import run_cli, study_of, write_space
from wrn_search.rundir import read_jsonl
from wrn_search.search import run_search
from wrn_search.space import load_space
from wrn_search.trainable import CRASH_ONCE_ENV


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_the_driver_then_resume(tmp_path):
    space = write_space(tmp_path, training={"epochs": 8}, search={"samples": 8, "scheduler": "none"})
    run_dir = tmp_path / "runs" / "killed"
    driver = subprocess.Popen(
        [sys.executable, "-m", "wrn_search", "run", str(space), "--name", "killed", "--storage-path", "runs",
         "--quiet"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def some_finished_and_some_mid_training() -> bool:
            finished = {r["number"] for r in read_jsonl(run_dir / "trials.jsonl")}
            # Three checkpoints in, a trial has forced an experiment snapshot (num_to_keep=2), so Ray knows it.
            running = {r["number"] for r in read_jsonl(run_dir / "epochs.jsonl") if r["epoch"] >= 3}
            return len(finished) >= 2 and bool(running - finished)

        wait_for(some_finished_and_some_mid_training, 240, "finished and running trials")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the Ray processes the driver started
        except ProcessLookupError:
            pass
    before_kill = {r["number"]: r for r in read_jsonl(run_dir / "trials.jsonl")}
    epochs_before = pd.DataFrame(read_jsonl(run_dir / "epochs.jsonl"))
    interrupted = set(epochs_before["number"]) - set(before_kill)
    lines_before = len(epochs_before)

    resumed = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    results = pd.read_csv(run_dir / "results.csv")
    study = study_of(run_dir)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    for number, record in before_kill.items():
        rows = results[results["number"] == number]
        assert len(rows) == 1
        assert rows.iloc[0]["val_error"] == pytest.approx(record["val_error"])
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == (results["state"] == "COMPLETE").sum() == 8  # the sample budget, all finished
    after = pd.DataFrame(read_jsonl(run_dir / "epochs.jsonl")).iloc[lines_before:]
    lost = {t.number for t in study.trials if t.user_attrs.get("outcome") == "lost"}
    assert all(study.trials[n].state.name == "FAIL" for n in lost)  # asked after Ray's last snapshot
    # A trial three checkpoints in forced a snapshot holding its checkpoint; one that Ray knew with no
    # checkpoint in its last snapshot yet restarts from epoch 1, as Tune restores it.
    reached = epochs_before.groupby("number")["epoch"].max()
    three_in = {number for number in interrupted - lost if reached[number] >= 3}
    assert three_in, "no trial was caught three checkpoints into training"
    for number in three_in:
        epochs = after[after["number"] == number]["epoch"].tolist()
        assert epochs and epochs[0] > 1, f"trial {number} restarted from epoch 1: {epochs}"
    pareto = pd.read_csv(run_dir / "pareto.csv")
    assert set(pareto["number"]) == {t.number for t in study.best_trials}


@pytest.fixture
def ray_with_crash_hook(tmp_path, monkeypatch):
    marker = tmp_path / "crashed-trial"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))  # workers inherit the environment Ray starts with
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield marker
    ray.shutdown()


def test_a_crashed_worker_is_retried_from_its_checkpoint(tmp_path, ray_with_crash_hook):
    space = write_space(tmp_path, training={"epochs": 4}, search={"samples": 3, "scheduler": "none"})
    run_dir = run_search(load_space(space), name="crash", storage_path=str(tmp_path / "runs"), verbose=0)
    crashed = int(ray_with_crash_hook.read_text())
    trials = study_of(run_dir).trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    ends = [r for r in read_jsonl(run_dir / "trials.jsonl") if r["number"] == crashed]
    assert len(ends) == 1 and ends[0]["state"] == "COMPLETE"
    epochs = [r["epoch"] for r in read_jsonl(run_dir / "epochs.jsonl") if r["number"] == crashed]
    assert epochs == [1, 2, 3, 4]  # epoch 2 was lost with the process and redone from epoch 1's checkpoint


def test_losing_a_node_mid_search(tmp_path):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
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
        space = write_space(tmp_path, training={"epochs": 6}, search={"samples": 6, "scheduler": "none"})
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
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        run_dir = run_search(load_space(space), name="diverge", storage_path=str(tmp_path / "runs"), verbose=0)
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
