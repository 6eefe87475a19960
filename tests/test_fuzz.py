"""Fuzz the files a run keeps and the tool reads: whatever a kill, a bad disk or a hand edit leaves in them,
a reader skips what it cannot use or refuses in one ValueError line; nothing else escapes."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.logs import EPOCH_SCHEMA, SCHEDULER_SCHEMA, TRIAL_SCHEMA, EpochLog
from wrn_search.search.schedulers import SuccessiveHalving
from wrn_search.spaces.space import load_space

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: JSON values of every kind, numbers far outside every range included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
#: Log keys the readers look at, and others.
keys = st.sampled_from(sorted({*EPOCH_SCHEMA.types, *TRIAL_SCHEMA.types, *SCHEDULER_SCHEMA.types, "x"}))
records = st.dictionaries(keys, json_values, max_size=8)
#: A line: a record, raw bytes (torn, not UTF-8), or JSON nested too deeply.
lines = st.one_of(
    records.map(lambda record: json.dumps(record).encode()),
    st.binary(max_size=60),
    st.integers(min_value=1, max_value=50_000).map(lambda depth: b"[" * depth + b"]" * depth),
    records.map(lambda record: json.dumps(record).encode()[: len(json.dumps(record)) // 2]),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """One folder whose files each example overwrites (hypothesis runs many examples per test call)."""
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(st.lists(lines, max_size=8))
def test_log_readers_keep_only_lines_that_fit_their_schema(folder, content):
    path = folder / "log.jsonl"
    path.write_bytes(b"\n".join(content))
    for schema in (EPOCH_SCHEMA, TRIAL_SCHEMA, SCHEDULER_SCHEMA):
        for record in read_jsonl(path, schema):
            assert schema.problem(record) is None
    EpochLog(path)  # a resumed session reads the epoch log whatever it holds
    scheduler = SuccessiveHalving(["val_error", "params"], max_t=9, grace_period=1, reduction_factor=3, log_path=path)
    assert all(len(values) == 2 for rung in scheduler.rungs.values() for values in rung.values())
    scheduler.decide("fuzzed", 1, (0.5, 100.0))


@FUZZ
@given(st.dictionaries(st.sampled_from(["format_version", "name", "study_name", "storage", "objectives", "directions",
                                        "tune_path", "dataset", "epochs", "samples", "epoch_budget", "created"]),
                       json_values, max_size=12) | json_values)
def test_a_manifest_loads_or_is_one_value_error(folder, data):
    run_dir = folder
    base = {"format_version": 1, "name": "r", "study_name": "r-1", "storage": "sqlite:///x.db",
            "objectives": ["val_error"], "directions": ["minimize"], "tune_path": "/t", "dataset": "digits",
            "epochs": 3, "samples": 4}
    (run_dir / "run.json").write_text(json.dumps({**base, **data} if isinstance(data, dict) else data))
    try:
        RunManifest.load(run_dir)
    except ValueError as error:
        assert "\n" not in str(error)


yaml_text = st.text(alphabet=string.printable, max_size=200)


@FUZZ
@given(st.one_of(yaml_text, st.binary(max_size=200), json_values.map(json.dumps)))
def test_a_space_file_loads_or_is_one_value_error(folder, content):
    path = folder / "space.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    try:
        load_space(path)
    except ValueError as error:
        assert "\n" not in str(error)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from run_fixtures import make_run

    return make_run(tmp_path_factory.mktemp("fuzz-run") / "run")


@FUZZ
@given(st.lists(lines, max_size=6), st.lists(lines, max_size=6))
def test_a_run_with_any_log_lines_reads(run_dir, epoch_lines, trial_lines):
    """What status, pareto and report read: the study, with whatever the logs hold appended."""
    from wrn_search.runs.results import RunResults

    for name, extra in (("epochs.jsonl", epoch_lines), ("trials.jsonl", trial_lines)):
        path = run_dir / name
        kept = path.read_bytes().split(b"\n#fuzz\n")[0]
        path.write_bytes(kept + b"\n#fuzz\n" + b"\n".join(extra))
    results = RunResults.load(run_dir)
    assert len(results.trials) == 8


@pytest.fixture(scope="module")
def table_files(tmp_path_factory) -> tuple[bytes, bytes, Path]:
    """A small valid table (its CSV and its JSON description) to mutate, and the folder to write them to."""
    from search_helpers import write_space
    from table_fixtures import write_synthetic_table

    directory = tmp_path_factory.mktemp("fuzz-table")
    space = load_space(write_space(directory, dimensions={"lr": [0.05, 0.1]}, training={"epochs": 3}))
    write_synthetic_table(space, directory / "valid.csv", seeds=1)
    return (directory / "valid.csv").read_bytes(), (directory / "valid.json").read_bytes(), directory


#: A change to one CSV cell: a value of another kind, or nothing.
cells = st.one_of(st.text(string.printable, max_size=12), st.sampled_from(["", "nan", "inf", "-1", "1e400", "10" * 30]),
                  st.integers(min_value=-(10**30), max_value=10**30).map(str), st.floats().map(repr))


@FUZZ
@given(st.data())
def test_a_table_loads_or_is_one_value_error(table_files, data):
    """A benchmark table (``wrn-search simulate --table``): a torn or edited CSV, a changed cell, garbage, or a
    description of any JSON, loads or is one line."""
    from wrn_search.simulation.table import load_table

    csv, description, directory = table_files
    rows = csv.decode().splitlines()
    how = data.draw(st.sampled_from(["cell", "torn", "garbage", "description"]))
    if how == "cell":
        row = data.draw(st.integers(0, len(rows) - 1))
        values = rows[row].split(",")
        values[data.draw(st.integers(0, len(values) - 1))] = data.draw(cells).replace(",", ";").replace("\n", " ")
        rows[row] = ",".join(values)
        csv = "\n".join(rows).encode()
    elif how == "torn":
        csv = csv[: data.draw(st.integers(0, len(csv)))]
    elif how == "garbage":
        csv = data.draw(st.binary(max_size=200))
    else:
        description = data.draw(st.one_of(json_values.map(json.dumps), st.binary(max_size=80))).__str__().encode()
    (directory / "table.csv").write_bytes(csv)
    (directory / "table.json").write_bytes(description)
    try:
        load_table(str(directory / "table.csv"))
    except ValueError as error:
        assert "\n" not in str(error), str(error)


@FUZZ
@given(st.binary(max_size=300))
def test_a_lock_holder_record_of_any_bytes_names_a_holder(folder, content):
    """``.lock`` names its holder in a refusal; whatever a kill or an edit left in it, the refusal still reads."""
    from wrn_search.runs.lock import holder_text

    (folder / ".lock").write_bytes(content)
    assert isinstance(holder_text(folder / ".lock"), str)


@FUZZ
@given(st.binary(max_size=300))
def test_a_checkpoint_epoch_file_of_any_bytes_is_a_number_or_none(folder, content):
    """A checkpoint's ``epoch.json`` sorts the checkpoints: garbage makes that checkpoint no candidate."""
    from wrn_search.runs.checkpoints import EPOCH_FILE, TrialCheckpoints

    (folder / EPOCH_FILE).write_bytes(content)
    epoch = TrialCheckpoints(str(folder), 0)._epoch(str(folder))
    assert epoch is None or isinstance(epoch, int)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.just(b"PK\x03\x04" + b"\x00" * 40)))
def test_a_checkpoint_of_any_bytes_is_one_checkpoint_error(folder, content):
    """``wrn-search export`` of a damaged ``checkpoint.pt``: one line naming it, no unpickling traceback."""
    from wrn_search.runs.export import load_checkpoint_model
    from wrn_search.training.checkpoint_format import CheckpointError

    path = folder / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint_model(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
