"""load_run / load_curves / write_results on run directories of finished, running and killed runs."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from ray.tune.search import Searcher, SearchGenerator
from run_fixtures import STANDARD_TRIALS, FakeTrial, add_trials, load_study, make_run
from search_helpers import run_cli, study_of, write_space
from table_fixtures import write_synthetic_table

import wrn_search
from wrn_search.cli import main
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import (
    COLUMNS,
    RunResults,
    hyperparameter_columns,
    hyperparameters,
    load_curves,
    load_run,
    write_results,
)
from wrn_search.runs.storage import study_storage
from wrn_search.simulation.simulate import simulate
from wrn_search.simulation.table import load_table
from wrn_search.spaces.space import load_space


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "run")


def test_one_row_per_study_trial_with_the_study_values(run_dir):
    frame = load_run(run_dir).set_index("number")
    study = load_study(run_dir)
    assert list(load_run(run_dir).columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(frame.index) == [t.number for t in study.trials]
    for trial in study.trials:
        row = frame.loc[trial.number]
        assert row["state"] == trial.state.name
        assert row["name"] == trial.user_attrs["name"]
        assert row["params"] == trial.user_attrs["params"] and row["macs"] == trial.user_attrs["macs"]
        if trial.values is not None:
            assert row["val_error"] == trial.values[0]
    assert frame.loc[5, "outcome"] == "stopped_early" and frame.loc[5, "epochs"] == 1
    assert frame.loc[6, "outcome"] == "diverged"
    assert frame.loc[0, "epochs"] == 3 and frame.loc[0, "wall_seconds"] == pytest.approx(1.5)
    assert frame.loc[0, "elapsed_seconds"] > 0


def test_running_trial_shows_its_latest_epoch(run_dir):
    row = load_run(run_dir).set_index("number").loc[7]
    assert (row["state"], row["outcome"], row["epochs"]) == ("RUNNING", "running", 2)
    assert row["val_error"] == pytest.approx(0.50)  # its epoch-2 line, not yet told to the study
    assert pd.isna(row["finished"])


def test_resumed_run_keeps_the_latest_attempt_and_skips_a_torn_line(run_dir):
    lines = (run_dir / "epochs.jsonl").read_text().splitlines()
    retry = [json.loads(line) for line in lines if json.loads(line)["number"] == 7][:1]
    retry[0]["val_error"] = 0.77
    with open(run_dir / "epochs.jsonl", "a") as log:
        log.write(json.dumps(retry[0]) + "\n")  # trial 7 restarted from epoch 1 after a kill
        log.write('{"trial_id": "7a1b2_00007", "number": 7, "ep')  # torn by the kill
    curves = load_curves(run_dir)
    again = curves[curves["number"] == 7]
    assert list(again["epoch"]) == [1] and list(again["val_error"]) == [0.77]
    assert not curves.duplicated(["number", "epoch"]).any()
    assert len(curves[curves["number"] == 0]) == 3
    row = load_run(run_dir).set_index("number").loc[7]
    assert row["epochs"] == 1 and row["val_error"] == 0.77


def test_repeated_epoch_keeps_the_last_line(run_dir):
    with open(run_dir / "epochs.jsonl", "a") as log:
        log.write(json.dumps({"trial_id": "7a1b2_00007", "number": 7, "epoch": 2, "val_error": 0.42,
                              "epoch_seconds": 0.5, "time": 0.0}) + "\n")
    curves = load_curves(run_dir)
    assert list(curves[curves["number"] == 7]["val_error"]) == [pytest.approx(0.55), 0.42]


def test_write_results_matches_study_best_trials(run_dir):
    results, pareto = write_results(RunResults.load(run_dir))
    table, front = pd.read_csv(results), pd.read_csv(pareto)
    assert len(table) == 8
    for column in ("trial_id", "name", "params", "macs", "val_error", "epochs", "state", "outcome"):
        assert column in table and column in front
    assert sorted(front["number"]) == sorted(t.number for t in load_study(run_dir).best_trials)


@pytest.mark.parametrize("study, own", [("journal", "{}/study.log"), ("sqlite", "sqlite:///{}/study.db")])
def test_moved_run_reads_its_own_study_file(tmp_path, study, own):
    moved = tmp_path / "moved"
    shutil.move(make_run(tmp_path / "run", study=study), moved)
    assert study_storage(moved, RunManifest.load(moved)) == own.format(moved)
    assert len(load_run(moved)) == 8


def test_empty_run_and_missing_run(tmp_path):
    empty = make_run(tmp_path / "empty", trials=())
    assert load_run(empty).empty and load_curves(empty).empty
    with pytest.raises(ValueError, match="not a wrn-search run"):
        load_run(tmp_path)


class FinishedTuner:
    """A ``tune.Tuner`` whose experiment has already run, for the end of :func:`wrn_search.search.orchestrate.fit`."""

    def __init__(self):
        config = SimpleNamespace(callbacks=None, verbose=0)
        self._local_tuner = SimpleNamespace(get_run_config=lambda: config,
                                            _tune_config=SimpleNamespace(search_alg=SearchGenerator(Searcher())))

    def fit(self) -> None:
        pass


def test_a_search_end_reads_the_run_once_for_its_files_report_and_printed_front(run_dir, monkeypatch, capsys):
    from wrn_search.cli.run import show_result
    from wrn_search.dashboards.report import write_report
    from wrn_search.runs import results as results_module
    from wrn_search.search.orchestrate import fit

    reads = []
    for name in ("open_study", "load_curves"):  # the study, and epochs.jsonl
        real = getattr(results_module, name)
        monkeypatch.setattr(results_module, name, lambda *args, real=real, name=name: reads.append(name) or real(*args))
    results = fit(FinishedTuner(), run_dir, RunManifest.load(run_dir), [], 0, on_results=write_report)
    assert show_result(results) == 0 and show_result(results, as_json=True) == 0
    assert reads == ["load_curves", "open_study"]
    table, summary = capsys.readouterr().out.split("\n{", 1)
    front = sorted(pd.read_csv(run_dir / "pareto.csv")["number"])
    assert sorted(row["number"] for row in json.loads("{" + summary)["front"]) == front
    assert f"{len(front)} of {len(pd.read_csv(run_dir / 'results.csv'))} trials on the front" in table
    assert (run_dir / "report.html").stat().st_size > 100_000


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory):
    """A simulated TPE run over 9 nets x 2 learning rates x 2 batch sizes: it asks some nets more than once."""
    folder = tmp_path_factory.mktemp("searched")
    path = write_space(folder, dimensions={"widen_factor": [0.25, 0.5, 1], "block_types": ["B(3,3)", "B(3,1,3)"],
                                           "lr": [0.05, 0.1], "batch_size": [32, 64]},
                       budget={"max_params": None}, search={"sampler": "tpe", "scheduler": "none", "samples": 30})
    document = yaml.safe_load(path.read_text())
    del document["training"]["batch_size"]  # searched instead
    path.write_text(yaml.safe_dump(document))
    space = load_space(path)
    table = load_table(write_synthetic_table(space, folder / "table.csv.gz"))
    return simulate(space, table, 2, name="searched", storage_path=str(folder)).run_dir


def test_searched_hyperparameters_are_columns_from_the_study(searched_run):
    frame = load_run(searched_run)
    assert list(frame.columns[: len(COLUMNS) + 2]) == COLUMNS + ["lr", "batch_size"]
    assert frame["batch_size"].dtype == "Int64" and hyperparameter_columns(frame) == ["lr", "batch_size"]
    rows = frame.set_index("number")
    for trial in study_of(searched_run).trials:
        assert (rows.loc[trial.number, "lr"], rows.loc[trial.number, "batch_size"]) == (
            trial.params["lr"], trial.params["batch_size"])
    assert (frame.groupby("name")["lr"].nunique() > 1).any()  # one net, two trials that now differ visibly
    saved = pd.read_csv(searched_run / "results.csv")
    assert list(saved["lr"]) == list(frame["lr"]) and list(saved["batch_size"]) == list(frame["batch_size"])
    assert hyperparameter_columns(load_run(make_run(searched_run.parent / "plain"))) == []  # nothing searched


def test_a_results_row_gives_its_hyperparameters_as_plain_values(searched_run):
    """What the model card takes from the row it is given (export.model_card)."""
    row = load_run(searched_run).iloc[0]
    values = hyperparameters(row)
    assert set(values) == {"lr", "batch_size"} and type(values["batch_size"]) is int
    assert json.loads(json.dumps(values)) == values


def test_pareto_lists_the_searched_hyperparameters(searched_run, capsys):
    assert main(["pareto", str(searched_run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all({"lr", "batch_size"} <= set(row) for row in rows)
    assert main(["pareto", str(searched_run)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:-1]
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        assert f"{row['trial_id']}  lr={row['lr']:g} batch_size={row['batch_size']}" in line


def test_status_is_a_library_call_the_cli_prints(searched_run, capsys):
    summary = wrn_search.status(searched_run)
    assert summary["trials"] == 30 and summary["resume_would"] is None
    best = summary["best"]
    row = load_run(searched_run).set_index("number").loc[best["number"]]
    assert best["hyperparameters"] == {"lr": row["lr"], "batch_size": row["batch_size"]}
    assert main(["status", str(searched_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(summary))
    assert main(["status", str(searched_run)]) == 0
    assert f"lr={row['lr']:g} batch_size={row['batch_size']}" in capsys.readouterr().out


def test_a_simulated_study_names_its_metrics(searched_run):
    """optuna-dashboard labels its axes with them; the simulator's in-memory study is copied with them."""
    assert study_of(searched_run).metric_names == ["val_error", "params"]


#: Commands that only read a run; none may crash on a corrupt file or write to the study.
READERS = (("status", "--json"), ("pareto",), ("report", "-o", "report.html"))


def append_line(path, text: str) -> None:
    with open(path, "a") as file:
        file.write(text + "\n")


def edit_manifest(run_dir, **changes) -> None:
    path = run_dir / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("log, line, problem", [
    ("epochs.jsonl", {"number": 2, "epoch": 4, "val_error": 0.01}, "no 'trial_id'"),
    ("epochs.jsonl", {"trial_id": "7a1b2_00002", "number": 2, "epoch": "three"}, "'epoch' must be int, got 'three'"),
    ("trials.jsonl", {"number": [1]}, "'number' must be int, got [1]"),
    ("epochs.jsonl", '{"trial_id": "7a1b2_00002", "number": 2, "epoch": 4' + "0" * 400 + "}",
     "'epoch' must be int, got 400000000000000000...0000000000000000000"),
    ("trials.jsonl", '{"number": 2, "params": 1' + "0" * 400 + "}", "'params' must be float | None, got "
     "100000000000000000...0000000000000000000"),
    ("epochs.jsonl", '{"trial_id": "7a1b2_00002", "epoch": 4, "x": ' + "[" * 10**5 + "]" * 10**5 + "}",
     "nested too deeply"),
])
def test_a_bad_log_line_is_skipped_with_one_warning(tmp_path, log, line, problem):
    run = make_run(tmp_path / "run")
    lines = len((run / log).read_text().splitlines())
    append_line(run / log, line if isinstance(line, str) else json.dumps(line))
    outputs = {}
    for command in READERS:
        done = run_cli(command[0], str(run), *command[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == [
            f"wrn-search: warning: {run / log}: skipped 1 bad line(s) (line {lines + 1}: {problem})"]
        outputs[command[0]] = done.stdout
    summary = json.loads(outputs["status"])
    assert (summary["trials"], summary["epochs_done"]) == (8, 20)  # as if the line were not there


def test_a_line_cut_mid_character_is_a_torn_line(tmp_path):
    """A non-UTF-8 line is what a kill mid-character leaves: skipped silently (status refused the whole run)."""
    run = make_run(tmp_path / "run")
    with open(run / "epochs.jsonl", "ab") as file:
        file.write('{"trial_id": "7a1b2_00002", "name": "\u00e9'.encode()[:-1] + b"\n")
    done = run_cli("status", str(run), "--json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["epochs_done"] == 20


@pytest.mark.parametrize("key, value, expected", [
    ("created", 5, "'created' must be str, got 5"),
    ("samples", "abc", "'samples' must be int, got 'abc'"),
])
def test_a_bad_manifest_field_is_one_line_naming_it(tmp_path, key, value, expected):
    run = make_run(tmp_path / "run")
    edit_manifest(run, **{key: value})
    for command in READERS:
        done = run_cli(command[0], str(run), *command[1:], cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [f"wrn-search {command[0]}: error: run_dir: {run / 'run.json'}: {expected}"]
    assert not (tmp_path / "report.html").exists()


def test_readers_never_write_an_empty_study_db(tmp_path):
    """A 0-byte study.db (a kill before Optuna wrote its schema) stays 0 bytes: refused in one line, exit 2."""
    run = make_run(tmp_path / "run", study="sqlite")
    (run / "study.db").write_bytes(b"")
    for command in READERS:
        done = run_cli(command[0], str(run), *command[1:], cwd=tmp_path)
        assert (done.returncode, done.stderr.splitlines()) == (2, [
            f"wrn-search {command[0]}: error: study-storage: {run / 'study.db'} holds no Optuna study "
            "(0 bytes, no 'studies' table)"])
        assert (run / "study.db").stat().st_size == 0


def test_readers_never_create_a_missing_journal(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "study.log").unlink()  # a kill before the driver's first write
    done = run_cli("status", str(run), cwd=tmp_path)
    assert (done.returncode, done.stderr.splitlines()) == (
        2, [f"wrn-search status: error: study-storage: {run / 'study.log'} does not exist (no study yet?)"])
    assert not (run / "study.log").exists()


def test_a_net_with_more_params_than_int64_holds_stays_readable(tmp_path):
    # No spec has that many (k is at most 1,000), but a study written by another tool or by hand may say so.
    run = make_run(tmp_path / "run", trials=(FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-10-2", 0.1, params=2**70)))
    huge = load_study(run).trials[1].user_attrs["params"]
    assert huge > 2**63
    for command in READERS:
        done = run_cli(command[0], str(run), *command[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    results, pareto = write_results(RunResults.load(run))
    assert list(pd.read_csv(results)["params"]) == [77562, pytest.approx(huge)]
    assert sorted(pd.read_csv(pareto)["number"]) == [0, 1]


def test_non_finite_and_unparsable_costs_are_float_or_missing(run_dir):
    load_study(run_dir).add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"name": "WRN-10-1", "params": math.inf, "macs": "lots"}))
    row = load_run(run_dir).iloc[-1]
    assert row["params"] == math.inf and pd.isna(row["macs"])
    assert load_run(run_dir)["macs"].dtype == "Int64"  # only a column that needs float becomes float


def test_a_study_that_named_the_block_type_block_reads_as_block_type(run_dir):
    """Runs made before the block type had one name stored it as the user attribute "block"."""
    load_study(run_dir).add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"name": "WRN-13-1-B(3,1,3)", "block": "B(3,1,3)"}))
    frame = load_run(run_dir)
    assert frame.iloc[-1]["block_type"] == "B(3,1,3)" and "block" not in frame
    assert frame["block_type"].notna().all()


def full_disk(limit: int):
    """Files may grow to ``limit`` bytes, after which a write fails (EFBIG) as on a full disk."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("outputs, command", [
    (("results.csv", "pareto.csv"),
     ["-c", "import sys; from wrn_search.runs.results import RunResults, write_results; "
           "write_results(RunResults.load(sys.argv[1]))", "RUN"]),
    (("report.html",), ["-m", "wrn_search", "report", "RUN", "-o", "RUN/report.html"]),
])
def test_a_write_cut_short_leaves_the_previous_file(tmp_path, outputs, command):
    run = make_run(tmp_path / "run")
    write_results(RunResults.load(run))
    (run / "report.html").write_text("<p>the previous report</p>")
    before = {name: (run / name).read_bytes() for name in outputs}
    add_trials(run, STANDARD_TRIALS[:2])  # new content to write
    args = [sys.executable] + [arg.replace("RUN", str(run)) for arg in command]
    limit = min(len(content) for content in before.values()) // 2
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          preexec_fn=full_disk(limit), env={"PYTHONDONTWRITEBYTECODE": "1", **os.environ})
    assert "[Errno 27] File too large" in done.stderr.splitlines()[-1]  # the write failed, not the process start
    assert {name: (run / name).read_bytes() for name in outputs} == before
    assert not [path.name for path in run.iterdir() if path.name.startswith(".")]  # no temp file left behind


def test_a_study_db_with_damaged_pages_is_one_line_for_every_reader(tmp_path):
    run = make_run(tmp_path / "run", study="sqlite")
    study = run / "study.db"
    size = study.stat().st_size
    with open(study, "r+b") as file:
        file.seek(size // 2)
        file.write(bytes(range(256)) * 16)
    damaged = study.read_bytes()
    for command in READERS:
        done = run_cli(command[0], str(run), *command[1:], cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"wrn-search {command[0]}: error: study-storage: {study} is damaged (")
        assert done.stderr.count("\n") == 1, done.stderr
    assert study.read_bytes() == damaged
