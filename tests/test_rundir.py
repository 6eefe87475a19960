"""Run-directory files: atomic manifest, durable logs that survive a torn line."""

import json

import pytest

from wrn_search.rundir import RunManifest, append_jsonl, read_jsonl


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
