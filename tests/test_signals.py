"""SIGTERM (preemption) and SIGINT (Ctrl-C) at any moment of a real ``wrn-search run``: the search stops,
its results are written, and the last line says how to continue (exit 143 or 130)."""

from __future__ import annotations

import signal

import pandas as pd
import psutil
import pytest
from search_helpers import run_cli, study_of, wait_for, write_space
from test_resume import kill_group, start_cli

from wrn_search.runs.files import read_jsonl

#: Every test here runs and kills searches.
pytestmark = pytest.mark.slow


def ray_starting(driver) -> bool:
    """The driver has begun starting Ray (its GCS server runs) and has not yet written its run directory."""
    try:
        return any("gcs_server" in child.name() for child in psutil.Process(driver.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return False


def stopped(driver, signum: int) -> str:
    """Send ``signum`` to the driver alone (as Kubernetes does), wait for it to end; its stderr."""
    try:
        driver.send_signal(signum)
        _, stderr = driver.communicate(timeout=180)
    finally:
        kill_group(driver)  # what outlived a graceful stop
    return stderr


def test_sigterm_mid_search_stops_like_ctrl_c_and_resume_finishes(tmp_path):
    space = write_space(tmp_path, training={"epochs": 4}, search={"samples": 4, "scheduler": "none"})
    run_dir = tmp_path / "runs" / "preempted"
    driver = start_cli(tmp_path, "run", str(space), "--name", "preempted", "--storage-path", "runs", "--quiet")
    wait_for(lambda: read_jsonl(run_dir / "epochs.jsonl"), 240, "a trained epoch")
    stderr = stopped(driver, signal.SIGTERM)
    finished = {r["number"] for r in read_jsonl(run_dir / "trials.jsonl")}
    unfinished = len(study_of(run_dir).trials) - len(finished)
    assert driver.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"wrn-search run: interrupted: {len(finished)} of 4 trials finished, {unfinished} unfinished; "
        f"continue with: wrn-search resume {run_dir}")
    results = pd.read_csv(run_dir / "results.csv")
    assert set(results.loc[results["state"] == "COMPLETE", "number"]) == finished

    resumed = run_cli("resume", str(run_dir), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = study_of(run_dir).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["ray starting", "run directory written"])
def test_a_stop_signal_in_start_up_stops_the_search(tmp_path, signum, moment):
    """Before the first trial: while Ray starts (Ray's own SIGTERM handlers) or before Tune listens (a
    SIGINT there was lost or raised mid-start): the search never runs, and says how to continue."""
    space = write_space(tmp_path, training={"epochs": 3}, search={"samples": 4, "scheduler": "none"})
    run_dir = tmp_path / "runs" / "early"
    driver = start_cli(tmp_path, "run", str(space), "--name", "early", "--storage-path", "runs", "--quiet")
    if moment == "ray starting":
        wait_for(lambda: ray_starting(driver), 240, "Ray starting")
    else:
        wait_for(lambda: (run_dir / "run.json").exists(), 240, "the run directory")
    stderr = stopped(driver, signum)
    assert driver.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("wrn-search run: interrupted: 0 of 4 trials finished, "), stderr[-3000:]
    assert last.endswith(f" unfinished; continue with: wrn-search resume {run_dir}")
    assert not read_jsonl(run_dir / "trials.jsonl")
