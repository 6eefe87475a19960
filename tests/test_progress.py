"""The progress line of run and resume: its counts are the study's, in place on a terminal, plain lines in a log;
--quiet shows only the result, --verbose Ray's tables, and no run prints Optuna's or Ray's noise."""

from __future__ import annotations

import io
import json
import math
import re
from types import SimpleNamespace

import pandas as pd
import pytest
from run_fixtures import STANDARD_TRIALS, make_run
from search_helpers import run_cli, study_of, write_space

from wrn_search.pareto import hypervolume, pareto_front, reference_point
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import load_run
from wrn_search.search.progress import ProgressLine, duration

LINE = re.compile(r"wrn-search: (\d+)/(\d+) finished, (\d+) running, (\d+) stopped early(?:, (\d+) failed)?; "
                  r"front (\d+), hypervolume (\d\.\d{4}); ETA (\S+), (\S+) elapsed")
#: The same on a terminal, redrawn in place: no prefix, shorter, so it fits 80 columns.
TERMINAL_LINE = re.compile(r"(\d+)/(\d+) finished, (\d+) running, (\d+) stopped(?:, (\d+) failed)?; "
                           r"front (\d+), hv (\d\.\d{3}); (\S+), ETA (\S+)")
#: What Optuna and Ray print that a user did not ask for.
NOISE = ("ExperimentalWarning", "A new study created", "Configuration for experiment", "ResumableSearchGenerator",
         "tensorboard --logdir", "View detailed results here", "Trial status")


def progress_lines(text: str) -> list[re.Match]:
    return [match for match in map(LINE.fullmatch, text.splitlines()) if match]


def normalised_hypervolume(run_dir) -> float:
    frame = load_run(run_dir)
    objectives = RunManifest.load(run_dir).objectives
    front = pareto_front(frame, objectives)
    reference = reference_point(frame, objectives)
    return hypervolume(front[objectives].to_numpy(dtype=float), reference) / math.prod(reference)


@pytest.fixture
def standard_run(tmp_path):
    """A run with trials 0-6 told (five COMPLETE, one PRUNED, one FAIL) and trial 7 still running."""
    return make_run(tmp_path / "run")


def tune_trials(*running: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(trial_id=trial_id, status="RUNNING") for trial_id in running]


def test_the_line_counts_what_the_searcher_told_the_study(standard_run):
    stream = io.StringIO()
    line = ProgressLine(standard_run, RunManifest.load(standard_run), in_place=False, stream=stream)
    # Tune calls on_trial_complete while the trial still shows RUNNING: it is finished, not running.
    trials = tune_trials("7a1b2_00006", "7a1b2_00007")
    line.on_trial_complete(1, trials, trials[0])
    (match,) = progress_lines(stream.getvalue())
    frame = load_run(standard_run)
    assert match.group(1, 2, 3, 4, 5) == ("7", "8", "1", "1", "1")
    assert int(match.group(6)) == len(pareto_front(frame, RunManifest.load(standard_run).objectives))
    assert float(match.group(7)) == pytest.approx(normalised_hypervolume(standard_run), abs=5e-5)
    # 8 trials x 3 epochs: 20 trained, 3 that the stopped and failed trials will never train, so 1 left;
    # no epoch trained in this session yet, so no rate.
    assert match.group(8) == "?" and line.epochs_left(20) == 1


def test_plain_lines_are_throttled_and_the_last_state_is_printed(standard_run):
    stream = io.StringIO()
    line = ProgressLine(standard_run, RunManifest.load(standard_run), in_place=False, stream=stream)
    trials = tune_trials("7a1b2_00007")
    line.on_trial_complete(1, trials, trials[0])
    line.on_trial_result(2, trials, trials[0], {"epoch": 3})  # the running trial's last epoch: nothing is left
    line.on_trial_complete(3, trials, trials[0])  # within PLAIN_INTERVAL_S of the first line: not printed
    line.on_step_end(4, trials)  # plain lines come at trial ends only
    assert len(progress_lines(stream.getvalue())) == 1
    line.on_experiment_end(trials)
    first, last = progress_lines(stream.getvalue())
    assert (first.group(8), last.group(8)) == ("?", "0s")
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_the_line_is_redrawn_in_place(standard_run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the line is cut to the terminal's width
    stream = io.StringIO()
    line = ProgressLine(standard_run, RunManifest.load(standard_run), in_place=True, stream=stream)
    trials = tune_trials("7a1b2_00007")
    line.on_trial_complete(1, trials, trials[0])
    line.width = 200  # as if a longer line had been drawn: the next one blanks its tail
    line.on_experiment_end(trials)
    first, last = stream.getvalue().split("\r")[1:]
    assert TERMINAL_LINE.fullmatch(first) and "\n" not in first and len(first) < 80
    assert last.endswith("\n") and len(last) == 201 and TERMINAL_LINE.fullmatch(last.rstrip())


def test_an_epoch_budget_caps_the_epochs_left(tmp_path):
    run = make_run(tmp_path / "run", STANDARD_TRIALS[:2])
    manifest = RunManifest.load(run)
    manifest.samples, manifest.epoch_budget = 10, 8
    line = ProgressLine(run, manifest, in_place=False, stream=io.StringIO())
    assert line.epochs_left(6) == 2 and line.epochs_left(9) == 0


def test_durations_stay_short():
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A tiny TPE + MO-ASHA search run from the command line by default (stderr is a pipe: plain lines)."""
    tmp_path = tmp_path_factory.mktemp("progress")
    space = write_space(tmp_path, training={"epochs": 2}, search={"sampler": "tpe", "scheduler": "moasha", "samples": 4},
                        dimensions={"lr": [0.02, 0.05]})  # more configurations than the resumes ask for
    result = run_cli("run", str(space), "--name", "watched", "--storage-path", "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, tmp_path / "runs" / "watched", result


@pytest.mark.slow  # a real search, or CLI processes in a row
def test_run_says_where_first_and_its_last_line_matches_the_study(cli_run):
    _, run_dir, result = cli_run
    lines = result.stderr.splitlines()
    assert lines[:2] == [f"wrn-search: run directory {run_dir}",
                         f"wrn-search: watch it with: wrn-search dashboard {run_dir}"]
    progress = progress_lines(result.stderr)
    assert progress and len(progress) == len(lines) - 2  # nothing else on stderr
    last = progress[-1]
    states = pd.Series([t.state.name for t in study_of(run_dir).trials]).value_counts()
    assert int(last.group(1)) == len(study_of(run_dir).trials) == int(last.group(2)) == 4
    assert (last.group(3), last.group(8)) == ("0", "0s")
    assert int(last.group(4)) == states.get("PRUNED", 0) and int(last.group(5) or 0) == states.get("FAIL", 0)
    assert int(last.group(6)) == len(pd.read_csv(run_dir / "pareto.csv"))
    assert float(last.group(7)) == pytest.approx(normalised_hypervolume(run_dir), abs=5e-5)
    assert "on the front" in result.stdout and not progress_lines(result.stdout)
    assert (run_dir / "report.html").is_file()


@pytest.mark.slow  # a real search, or CLI processes in a row
def test_a_run_prints_no_upstream_noise(cli_run):
    _, _, result = cli_run
    for text in NOISE:
        assert text not in result.stderr and text not in result.stdout, text


@pytest.mark.slow  # a real search, or CLI processes in a row
def test_resume_verbose_shows_rays_tables_and_quiet_json_only_the_result(cli_run):
    tmp_path, run_dir, _ = cli_run
    verbose = run_cli("resume", str(run_dir), "--samples", "5", "--verbose", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Trial status" in verbose.stdout and "config" in verbose.stdout  # Ray's status and per-trial tables
    assert verbose.stderr.startswith(f"wrn-search: resuming {run_dir}\n")
    assert int(progress_lines(verbose.stderr)[-1].group(1)) == 5

    quiet = run_cli("resume", str(run_dir), "--samples", "6", "--quiet", "--json", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stderr == ""
    result = json.loads(quiet.stdout)
    states = pd.Series([t.state.name for t in study_of(run_dir).trials]).value_counts().to_dict()
    assert result["run_dir"] == str(run_dir) and result["trials"] == 6 and result["states"] == states
    assert [row["number"] for row in result["front"]] == pd.read_csv(run_dir / "pareto.csv")["number"].tolist()
