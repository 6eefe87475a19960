"""A search never sits idle forever: trials Tune loses when it cannot reuse an actor, and stalls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from search_helpers import study_of, write_space

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import TRIAL_LOG
from wrn_search.search.cluster import REUSE_TIMEOUT_ENV, REUSE_TIMEOUT_S, trial_environment
from wrn_search.search.watchdog import SearchWatchdog


class Silent(Searcher):
    """Offers nothing and records what it is told."""

    def __init__(self):
        super().__init__()
        self.told: list[tuple[str, bool]] = []

    def suggest(self, trial_id):
        return {"x": 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, error))


def trial(trial_id: str, status: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status)


def test_an_error_tune_did_not_report_frees_the_slot_and_reaches_the_searcher():
    searcher = Silent()
    generator = SearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=2))
    generator.searcher.suggest("a")
    generator.searcher.suggest("b")
    watchdog = SearchWatchdog(generator)
    watchdog.on_step_end(1, [trial("a", Trial.ERROR), trial("b", Trial.RUNNING)])
    assert searcher.told == [("a", True)]
    assert generator.searcher.live_trials == {"b"}
    watchdog.on_step_end(2, [trial("a", Trial.ERROR), trial("b", Trial.RUNNING)])
    assert searcher.told == [("a", True)], "told once"


def test_a_search_with_nothing_running_and_nothing_offered_stops(monkeypatch):
    clock = iter([0.0, 10.0, 301.0])
    monkeypatch.setattr("wrn_search.search.watchdog.time.monotonic", lambda: next(clock))
    generator = SearchGenerator(Silent())
    generator.set_state({**generator.get_state(), "total_samples": 10})  # 10 trials to ask, as Tune sets
    watchdog = SearchWatchdog(generator, stall_seconds=300)
    done = [trial("a", Trial.TERMINATED)]
    watchdog.on_step_end(1, done)
    watchdog.on_step_end(2, done)
    assert watchdog.stalled is None and not generator.is_finished()
    watchdog.on_step_end(3, done)
    assert watchdog.stalled.startswith("stalled: no trial ran") and generator.is_finished()


def test_a_running_trial_is_not_a_stall(monkeypatch):
    monkeypatch.setattr("wrn_search.search.watchdog.time.monotonic", lambda: 1e9)
    watchdog = SearchWatchdog(SearchGenerator(Silent()), stall_seconds=0)
    watchdog.on_step_end(1, [trial("a", Trial.RUNNING)])
    watchdog.on_step_end(2, [trial("a", Trial.RUNNING)])
    assert watchdog.stalled is None


def test_trials_get_a_reuse_timeout_that_fits_the_work(monkeypatch):
    monkeypatch.delenv(REUSE_TIMEOUT_ENV, raising=False)
    assert trial_environment() == {"env_vars": {REUSE_TIMEOUT_ENV: str(REUSE_TIMEOUT_S)}}
    monkeypatch.setenv(REUSE_TIMEOUT_ENV, "7")
    assert trial_environment()["env_vars"][REUSE_TIMEOUT_ENV] == "7"


@pytest.mark.slow
def test_a_search_whose_actors_cannot_be_reused_finishes_and_resume_retries_the_lost_trials(tmp_path):
    """Tune's reuse timeout at 0 makes every actor reuse fail: the search used to hang after its first trial."""
    space = write_space(tmp_path, search={"samples": 4}, training={"epochs": 2, "batch_size": 128})
    env = {**os.environ, REUSE_TIMEOUT_ENV: "0"}
    command = [sys.executable, "-m", "wrn_search", "run", str(space), "--storage-path", str(tmp_path),
               "--name", "r", "--quiet"]
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stderr[-2000:]
    run_dir = tmp_path / "r"
    told = read_jsonl(run_dir / TRIAL_LOG)
    assert len(told) == 4
    lost = [record for record in told if record["outcome"] == "error"]
    assert lost, "with no time to end a trial's thread, some actor reuse fails"
    assert "did not report to the searcher" in finished.stderr
    resumed = subprocess.run([sys.executable, "-m", "wrn_search", "resume", str(run_dir), "--quiet"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    retried = [frozen for frozen in study_of(run_dir).trials if "retry_of" in frozen.user_attrs]
    assert sorted(frozen.user_attrs["retry_of"] for frozen in retried) == sorted(r["number"] for r in lost)
    assert all(frozen.state.is_finished() for frozen in study_of(run_dir).trials)
    assert json.loads((run_dir / "run.json").read_text())["samples"] == 4
