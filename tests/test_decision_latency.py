"""The decision_latency benchmark's timed simulation counts every driver decision once; gpu_packing skips on CPU."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_helpers import write_space  # noqa: E402
from table_fixtures import write_synthetic_table  # noqa: E402
from test_simulate import SIM_SECTIONS  # noqa: E402

from benchmarks import decision_latency, gpu_packing, run  # noqa: E402
from wrn_search.simulation.table import load_table  # noqa: E402
from wrn_search.spaces.space import load_space  # noqa: E402
from wrn_search.training.recipe import START_EPOCH  # noqa: E402

TRIALS = 200


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """200 trials of the default TPE + MO-ASHA on 16 workers over a synthetic table, journal storage."""
    directory = tmp_path_factory.mktemp("declat")
    # More configurations than trials: a study never trains one twice, so a smaller space would end first.
    sections = {**SIM_SECTIONS, "dimensions": {**SIM_SECTIONS["dimensions"], "lr": [0.01, 0.02, 0.05, 0.1, 0.2],
                                               "widen_factor": [0.25, 0.375, 0.5, 0.75, 1, 1.5, 2],
                                               "depth": {"min": 10, "max": 22}, "dropout": [0.0, 0.3]}}
    space = load_space(write_space(directory, "sim.yaml", **sections)).with_overrides(samples=TRIALS, seed=0)
    assert len(list(space.grid_configs())) > TRIALS
    table = load_table(write_synthetic_table(space, directory / "sim.csv.gz", seeds=2))
    (directory / "run").mkdir()
    return decision_latency.measure(space, table, 16, "journal", directory / "run")


def test_one_suggest_per_trial_one_tell_per_finished_trial_one_decision_per_epoch(measured):
    calls, trials = measured.log, measured.searcher.study.get_trials(deepcopy=False)
    assert calls.count("suggest") == calls.asked == len(trials) == TRIALS
    assert calls.count("tell") == len(measured.simulation.finished) == TRIALS
    assert sorted(calls.told) == sorted(trial.user_attrs["trial_id"] for trial in trials) and measured.told_once
    # The searcher stores the epoch each trial reached (a continuation started later); the scheduler saw every one.
    assert calls.count("schedule") == sum(trial.user_attrs["epochs"] - trial.user_attrs.get(START_EPOCH, 0)
                                          for trial in trials) == measured.epochs
    suggests = [call.trials for call in calls.calls if call.kind == "suggest"]
    assert suggests == list(range(1, TRIALS + 1))  # each suggest is counted in the study it grew


def test_windows_cover_every_call_with_p50_at_most_p99(measured):
    rows = decision_latency.windows(measured, window=50)
    assert {(row.kind, row.first, row.last) for row in rows if row.kind == "suggest"} == {
        ("suggest", first, first + 49) for first in (1, 51, 101, 151)}
    for kind in decision_latency.KINDS:
        assert sum(row.calls for row in rows if row.kind == kind) == measured.log.count(kind)
    assert all(0 < row.p50_ms <= row.p99_ms for row in rows)
    capacity = decision_latency.capacity(measured, window=50)
    assert capacity["driver_ms_per_epoch"] > 0 and capacity["gpus_busy"]["epoch_10_s"] > 0
    assert capacity["gpus_busy_with_rung_saves"]["epoch_10_s"] <= capacity["gpus_busy"]["epoch_10_s"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the placeholder row is for machines without CUDA")
def test_gpu_packing_is_a_skipped_row_without_cuda(capsys):
    row = gpu_packing.run(quick=True)
    assert row.workload == "skipped: no CUDA" and row.checks == {}
    assert "skipped: no CUDA" in capsys.readouterr().err
    assert "gpu_packing: skipped: no CUDA" in run.format_table([row])
    assert json.loads(json.dumps(row.to_dict()))["details"] == {"skipped": "no CUDA"}


def test_the_default_search_has_a_configuration_for_each_of_its_10000_trials():
    """A study never trains a configuration twice: on the 192 of digits-wrn the 10,000-trial run ended early."""
    space = decision_latency.large_space()
    ours = decision_latency.WORKLOADS[False][0]
    assert (ours.storage, ours.sampler, ours.trials) == ("journal", space.search.sampler, 10_000)
    assert (space.search.sampler, space.search.scheduler) == ("tpe", "moasha")
    assert len(list(space.grid_configs())) >= 10 * max(workload.trials for workload in decision_latency.WORKLOADS[False])
    assert space.training == decision_latency.load_space(decision_latency.SPACE).training
