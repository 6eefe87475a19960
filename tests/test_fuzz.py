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
