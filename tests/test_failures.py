"""What counts as a disk that cannot be written, and as a Ray snapshot that restores (real files, no Ray)."""

from __future__ import annotations

import errno
import json
import pickle
import sqlite3

import optuna
import pytest
from run_fixtures import make_run
from search_helpers import run_cli, write_space

from wrn_search.runs.files import read_jsonl
from wrn_search.search.failures import unwritable_error
from wrn_search.search.snapshot import has_snapshot


def test_a_read_only_sqlite_study_is_unwritable_through_optuna(tmp_path):
    """Optuna wraps SQLite's "attempt to write a readonly database" in StorageInternalError: still a read-only disk."""
    path = tmp_path / "study.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    storage = optuna.storages.RDBStorage(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(optuna.exceptions.StorageInternalError) as raised:
        optuna.load_study(study_name="s", storage=storage).ask()
    cause = unwritable_error(raised.value)
    assert cause is not None and cause.errno == errno.EROFS


def test_other_sqlite_errors_are_not_a_disk_fault():
    with pytest.raises(sqlite3.OperationalError) as raised:
        sqlite3.connect(":memory:").execute("SELECT * FROM missing")
    assert unwritable_error(raised.value) is None


def write_snapshot(tune_dir, state: bytes, searcher: bytes) -> None:
    tune_dir.mkdir(exist_ok=True)
    (tune_dir / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (tune_dir / "experiment_state-2026-12-07_10-00-00.json").write_bytes(state)
    (tune_dir / "searcher-state-2026-12-07_10-00-00.pkl").write_bytes(searcher)


def test_a_torn_snapshot_counts_as_none(tmp_path):
    """Tune copies its snapshot onto storage in place: a full disk leaves a cut JSON or a pickle without its end."""
    state = json.dumps({"runner_data": {}, "trial_data": [["x" * 100]]}).encode()
    searcher = pickle.dumps({"trials": list(range(100))})
    tune_dir = tmp_path / "tune"
    assert not has_snapshot(str(tune_dir))
    write_snapshot(tune_dir, state, searcher)
    assert has_snapshot(str(tune_dir))
    write_snapshot(tune_dir, state[: len(state) // 2], searcher)
    assert not has_snapshot(str(tune_dir))
    write_snapshot(tune_dir, state, searcher[:-1])
    assert not has_snapshot(str(tune_dir))
    (tune_dir / "experiment_state-2026-12-07_11-00-00.json").write_bytes(state)  # a newer one, whole; the pickle
    assert not has_snapshot(str(tune_dir))                                      # restored with it is still torn


def test_resume_refuses_bad_budgets_before_writing_anything(tmp_path):
    """A refused ``resume --samples/--epoch-budget`` writes no ``.lock`` and leaves ``run.json`` as it was;
    fewer samples than the trials the run finished are refused too."""
    run_dir = make_run(tmp_path / "runs" / "done")
    write_space(run_dir, "space.yaml")
    finished = len({record["number"] for record in read_jsonl(run_dir / "trials.jsonl")})
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    for args, field in ((["--samples", "0"], "samples"), (["--samples", str(finished - 1)], "samples"),
                        (["--epoch-budget", "-5"], "epoch_budget")):
        result = run_cli("resume", str(run_dir), *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-3000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{field}: " in lines[0], result.stderr[-3000:]
        assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == before, args
    assert f"below the {finished} trials this run has finished" in run_cli(
        "resume", str(run_dir), "--samples", "1", cwd=tmp_path).stderr


@pytest.mark.parametrize("study", ["journal", "sqlite"])
def test_resume_refuses_a_study_that_lost_the_trials_its_log_recorded(tmp_path, study):
    """An emptied study (tune/ gone, logs whole) used to be resumed as a new study over the old logs."""
    run_dir = make_run(tmp_path / "runs" / "lost", study=study)
    write_space(run_dir, "space.yaml")
    manifest = json.loads((run_dir / "run.json").read_text())
    if study == "journal":
        (run_dir / "study.log").write_bytes(b"")
    else:
        optuna.delete_study(study_name=manifest["study_name"], storage=manifest["storage"])
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    result = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trials.jsonl recorded" in lines[0] and "mix" in lines[0], result.stderr[-3000:]
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before  # no .lock either
    (run_dir / ".lock").write_text('{"pid": 1}\n')  # a run that was held before keeps its holder record
    assert run_cli("resume", str(run_dir), cwd=tmp_path).returncode == 2
    assert (run_dir / ".lock").read_text() == '{"pid": 1}\n'
