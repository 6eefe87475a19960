"""Run-directory files: atomic manifest, durable logs that survive a torn line, validated reads, read-only studies."""

import json
import logging
import subprocess
import sys

import optuna
import pytest
from run_fixtures import make_run

from wrn_search.runs.files import append_jsonl, read_jsonl
from wrn_search.runs.layout import RunDamaged, RunManifest
from wrn_search.runs.logs import EPOCH_SCHEMA
from wrn_search.runs.storage import open_storage


def test_a_line_torn_by_a_kill_does_not_swallow_the_next_record(tmp_path):
    log = tmp_path / "epochs.jsonl"
    append_jsonl(log, {"epoch": 1})
    with open(log, "a") as file:
        file.write('{"epoch": 2, "val_')  # the driver died mid-write
    append_jsonl(log, {"epoch": 3})
    assert read_jsonl(log) == [{"epoch": 1}, {"epoch": 3}]


def test_manifest_round_trip_and_version_check(tmp_path):
    manifest = RunManifest(name="r", study_name="r-1", storage="sqlite:///x.db", objectives=["val_error"],
                           directions=["minimize"], tune_path="/t", dataset="digits", epochs=3, samples=4)
    manifest.save(tmp_path)
    assert RunManifest.load(tmp_path) == manifest
    data = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(ValueError, match="^run_dir: .* has run format 2"):
        RunManifest.load(tmp_path)
    with pytest.raises(ValueError, match="is not a wrn-search run"):
        RunManifest.load(tmp_path / "..")


def test_a_manifest_written_before_epoch_budgets_loads_unlimited(tmp_path):
    manifest = RunManifest(name="r", study_name="r-1", storage="sqlite:///x.db", objectives=["val_error"],
                           directions=["minimize"], tune_path="/t", dataset="digits", epochs=3, samples=4,
                           epoch_budget=20)
    manifest.save(tmp_path)
    assert RunManifest.load(tmp_path).epoch_budget == 20
    data = json.loads((tmp_path / "run.json").read_text())
    del data["epoch_budget"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert RunManifest.load(tmp_path).epoch_budget is None


@pytest.mark.parametrize("key, value, expected", [
    ("created", 5, "'created' must be str, got 5"),
    ("created", "yesterday", "'created' must be an ISO 8601 time, got 'yesterday'"),
    ("samples", "abc", "'samples' must be int, got 'abc'"),
    ("samples", True, "'samples' must be int, got True"),
    ("epoch_budget", 2.5, "'epoch_budget' must be int | None, got 2.5"),
    ("objectives", ["val_error", 3], "'objectives' must be list[str], got ['val_error', 3]"),
    ("tune_path", {"a": 1}, "'tune_path' must be str | None, got {'a': 1}"),
])
def test_a_manifest_field_of_the_wrong_type_is_refused_naming_it(tmp_path, key, value, expected):
    RunManifest(name="r", study_name="r-1", storage="sqlite:///x.db", objectives=["val_error"],
                directions=["minimize"], tune_path="/t", dataset="digits", epochs=3, samples=4).save(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**data, key: value}))
    with pytest.raises(ValueError) as refused:
        RunManifest.load(tmp_path)
    assert str(refused.value) == f"run_dir: {tmp_path / 'run.json'}: {expected}"


def test_bad_lines_are_skipped_with_one_warning_per_log(tmp_path, caplog):
    log = tmp_path / "epochs.jsonl"
    good = {"trial_id": "a", "number": 0, "epoch": 1, "val_error": 0.5, "params": 10**30}
    lines = [good, {"number": 0, "epoch": 2}, {**good, "epoch": "three"}, [1], {**good, "epoch": 2}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"trial_id": "a", "ep')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(log, EPOCH_SCHEMA) == [good, {**good, "epoch": 2}]
        assert read_jsonl(log, EPOCH_SCHEMA) == [good, {**good, "epoch": 2}]  # a poller reads it again
    assert caplog.messages == [f"wrn-search: warning: {log}: skipped 3 bad line(s) (line 2: no 'trial_id')"]
    assert read_jsonl(log) == [good, {"number": 0, "epoch": 2}, {**good, "epoch": "three"}, {**good, "epoch": 2}]


GOOD_EPOCH = {"trial_id": "a", "number": 0, "epoch": 1, "val_error": 0.5}


@pytest.mark.parametrize("bad, problem", [
    (b'{"trial_id": "a", "epoch": 1' + b"0" * 400 + b"}",
     "'epoch' must be int, got 100000000000000000...0000000000000000000"),
    (b'{"trial_id": "a", "epoch": 2, "params": 1' + b"0" * 400 + b"}", "'params' must be float | None, got 1000"),
    (b'{"trial_id": "a", "epoch": 2, "number": 9223372036854775808}', "'number' must be int | None"),
    (b'{"trial_id": "a", "epoch": 1' + b"0" * 5000 + b"}", "a number too long to read"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"trial_id": "a", "epoch": 2, "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"trial_id": ["a"], "epoch": 2}', "'trial_id' must be str, got ['a']"),
])
def test_every_class_of_bad_line_is_skipped_with_a_warning(tmp_path, caplog, bad, problem):
    log = tmp_path / "epochs.jsonl"
    second = {**GOOD_EPOCH, "epoch": 2}
    log.write_bytes(json.dumps(GOOD_EPOCH).encode() + b"\n" + bad + b"\n" + json.dumps(second).encode())
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(log, EPOCH_SCHEMA) == [GOOD_EPOCH, second]
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith(
        f"wrn-search: warning: {log}: skipped 1 bad line(s) (line 2: {problem}"), caplog.messages


@pytest.mark.parametrize("torn", [b'{"trial_id": "a", "ep', '{"name": "\u00e9'.encode()[:-1], b"\xff\xfe\x00garbage"])
def test_a_torn_or_non_utf8_line_is_skipped_silently(tmp_path, caplog, torn):
    """A kill can cut a line mid-character: it is a torn line, not a reason to refuse the run."""
    log = tmp_path / "epochs.jsonl"
    good = json.dumps(GOOD_EPOCH).encode()
    log.write_bytes(good + b"\n" + torn + b"\n" + good + b"\n")
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(log, EPOCH_SCHEMA) == [GOOD_EPOCH, GOOD_EPOCH]
    assert caplog.messages == []


@pytest.mark.parametrize("content", [b"", b"not a database, just text\n" * 200])
def test_a_reader_refuses_a_study_file_without_a_study_and_leaves_it_as_it_was(tmp_path, content):
    path = tmp_path / "study.db"
    path.write_bytes(content)
    with pytest.raises(RunDamaged, match=f"^study-storage: {path} (holds no Optuna study|is not a readable SQLite)"):
        open_storage(f"sqlite:///{path}", read_only=True)
    assert path.read_bytes() == content


def test_a_reader_creates_no_missing_study_file(tmp_path):
    for url, path in ((f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "study.db"),
                      (str(tmp_path / "study.log"), tmp_path / "study.log")):
        with pytest.raises(RunDamaged, match="does not exist"):
            open_storage(url, read_only=True)
        assert not path.exists()


def test_a_read_only_study_cannot_be_written(tmp_path):
    run = make_run(tmp_path / "run", study="sqlite")
    before = (run / "study.db").read_bytes()
    storage = open_storage(f"sqlite:///{run / 'study.db'}", read_only=True)
    study = optuna.load_study(study_name="run-0000", storage=storage)
    assert len(study.trials) == 8
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
        study.set_user_attr("note", "a reader must not write this")
    assert "readonly database" in str(refused.value.__cause__)
    assert (run / "study.db").read_bytes() == before


def test_a_transaction_cut_by_a_kill_is_not_rolled_back_by_a_reader(tmp_path):
    """Rolling back a hot journal is a write; a reader names the problem and who can fix it."""
    run = make_run(tmp_path / "run", study="sqlite")
    writer_killed_mid_transaction = """if True:
        import os, sqlite3, sys
        database = sqlite3.connect(sys.argv[1], isolation_level=None)
        database.execute("PRAGMA cache_size = 1")  # the changes spill to the file before a commit
        database.execute("BEGIN EXCLUSIVE")
        database.execute("UPDATE trial_user_attributes SET value_json = value_json || ' '")
        database.execute("CREATE TABLE filler (x BLOB)")
        database.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 100)
        os._exit(0)
    """
    subprocess.run([sys.executable, "-c", writer_killed_mid_transaction, str(run / "study.db")], check=True)
    journal = run / "study.db-journal"
    assert journal.stat().st_size > 0
    before = (run / "study.db").read_bytes(), journal.read_bytes()
    with pytest.raises(RunDamaged, match="holds a transaction cut by a kill, which only a writer rolls back"):
        open_storage(f"sqlite:///{run / 'study.db'}", read_only=True)
    assert ((run / "study.db").read_bytes(), journal.read_bytes()) == before


def test_a_writer_cuts_a_journal_record_torn_by_a_kill_and_says_so(tmp_path, caplog):
    """Optuna appended its next record onto the torn one, and then no command could read the study."""
    journal = tmp_path / "study.log"
    study = optuna.create_study(study_name="s", storage=open_storage(str(journal)))
    study.add_trial(optuna.trial.create_trial(value=0.5))
    intact = journal.read_bytes()
    with open(journal, "ab") as file:
        file.write(b'{"op_code": 4, "worker_id": "x", "trial_id": 1, "va')  # the kill
    reader = optuna.load_study(study_name="s", storage=open_storage(str(journal), read_only=True))
    assert len(reader.trials) == 1 and journal.read_bytes().endswith(b'"va')  # a reader leaves it
    with caplog.at_level(logging.WARNING):
        writer = optuna.load_study(study_name="s", storage=open_storage(str(journal)))
    assert journal.read_bytes() == intact
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"wrn-search: warning: study-storage: {journal}: removed a record torn by a kill at its end (51 bytes); "
        "the study continues from the record before it"]
    writer.add_trial(optuna.trial.create_trial(value=0.25))
    again = optuna.load_study(study_name="s", storage=open_storage(str(journal), read_only=True))
    assert [trial.value for trial in again.trials] == [0.5, 0.25]


def damaged_study(path) -> None:
    """An Optuna study whose pages in the middle a bad disk overwrote."""
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{path}"))
    for value in range(150):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"name": "WRN-16-2" * 10}))
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2)
        file.write(bytes(range(256)) * 16)


@pytest.mark.parametrize("read_only", [True, False])
def test_a_study_db_with_damaged_pages_is_refused_in_one_line(tmp_path, read_only):
    """status ended in a traceback and resume ran on for minutes printing them."""
    path = tmp_path / "study.db"
    damaged_study(path)
    with pytest.raises(RunDamaged) as refused:
        open_storage(f"sqlite:///{path}", read_only=read_only)
    assert str(refused.value).startswith(f"study-storage: {path} is damaged (")
    assert str(refused.value).endswith(f"); restore it from a backup, or save what SQLite can still read with "
                                       f"`sqlite3 {path} .recover`")
