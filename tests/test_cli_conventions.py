"""The conventions of the command line and the Python API: --version, extra Ray Tune callbacks through
run_search and resume_search on a real local Ray, and their on_results hook (the CLI writes report.html there)."""

from __future__ import annotations

import pytest
from ray import tune
from search_helpers import write_space

from wrn_search import __version__
from wrn_search.cli import main
from wrn_search.dashboards.report import write_report
from wrn_search.runs.files import read_jsonl
from wrn_search.search.orchestrate import resume_search, run_search
from wrn_search.spaces.space import load_space

#: Every test here starts Ray or a search (the fast loop, ``pytest -m "not slow"``, leaves them out).
pytestmark = pytest.mark.slow


class ResultRecorder(tune.Callback):
    """A user's callback: remembers every (trial id, epoch) Tune reports."""

    def __init__(self):
        self.results: list[tuple[str, int]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.results.append((trial.trial_id, result["epoch"]))


def logged_epochs(run_dir) -> list[tuple[str, int]]:
    return [(record["trial_id"], record["epoch"]) for record in read_jsonl(run_dir / "epochs.jsonl")]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"wrn-search {__version__}\n"


def test_callbacks_reach_tune_on_run_and_resume_and_on_results_gets_the_results(local_ray, tmp_path):
    space = load_space(write_space(tmp_path, training={"epochs": 2}, search={"samples": 3, "scheduler": "none"}))
    first = ResultRecorder()
    run_dir = run_search(space, name="called", storage_path=str(tmp_path / "runs"), progress=False,
                         callbacks=[first], on_results=write_report).run_dir
    assert sorted(first.results) == sorted(logged_epochs(run_dir)) and len(first.results) == 3 * 2
    assert (run_dir / "report.html").stat().st_size > 100_000  # as `wrn-search run` writes it

    (run_dir / "report.html").unlink()
    again = ResultRecorder()
    told = []
    resume_search(run_dir, samples=4, progress=False, callbacks=[again], on_results=told.append)
    assert sorted(again.results) == sorted(logged_epochs(run_dir)[len(first.results):])
    assert len(again.results) == 2 and {trial_id for trial_id, _ in again.results}.isdisjoint(dict(first.results))
    assert [len(results.trials) for results in told] == [4] and not (run_dir / "report.html").exists()
