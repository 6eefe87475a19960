"""The sim_efficiency benchmark's figures on a tiny synthetic table: consistent, reproducible, schedule-free."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_helpers import write_space  # noqa: E402
from table_fixtures import write_synthetic_table  # noqa: E402

from benchmarks import sim_efficiency as bench  # noqa: E402
from wrn_search.simulation.simulate import Simulation, table_seed  # noqa: E402
from wrn_search.simulation.table import load_table  # noqa: E402
from wrn_search.spaces.space import load_space  # noqa: E402

#: 18 configs (WRN-10, -13, -16 x 3 widths x 2 lr), 9 epochs: rungs at 1 and 3 (9 is the full budget).
SECTIONS = {
    "dimensions": {"widen_factor": [0.25, 0.5, 1], "block_types": ["B(3,3)", "B(3,1,3)"], "lr": [0.05, 0.1]},
    "dataset": {"name": "digits", "val_fraction": 0.3},
    "training": {"epochs": 9, "batch_size": 64},
    "budget": {"max_params": None},
    "search": {"objectives": ["val_error", "params"], "sampler": "tpe", "scheduler": "moasha", "samples": 60,
               "max_concurrent": 3, "grace_period": 1, "reduction_factor": 3},
}
METHODS = tuple(method for method in bench.METHODS if method.name in ("ours", "random", "random_moasha"))
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("simeff")
    space = load_space(write_space(directory, "sim.yaml", **SECTIONS))
    table = load_table(write_synthetic_table(space, directory / "sim.csv.gz", seeds=2))
    return space, table, bench.evaluate(space, table, SEEDS, METHODS, processes=2)


def test_random_reaches_its_own_final_hypervolume_at_its_last_improvement(tiny):
    _, _, evaluation = tiny
    for run, time in zip(evaluation.runs["random"], evaluation.times_to_target("random")):
        assert run.steps and time == run.steps[-1][0] <= run.time_budget
        assert run.final == run.steps[-1][1]


def test_regret_is_in_0_1_and_never_worse_at_the_end(tiny):
    _, _, evaluation = tiny
    for runs in evaluation.runs.values():
        for run in runs:
            regrets = [run.regret_at(fraction) for fraction in bench.FRACTIONS]
            assert all(0 <= regret <= 1 for regret in regrets)
            assert regrets[-1] <= regrets[0]
            assert [time for time, _ in run.steps] == sorted(time for time, _ in run.steps)


def test_every_method_gets_the_same_seeds_table_seeds_and_budget(tiny):
    space, table, evaluation = tiny
    assert set(evaluation.runs) == {method.name for method in METHODS}
    for runs in evaluation.runs.values():
        assert [run.seed for run in runs] == SEEDS
        assert [run.table_seed for run in runs] == [table_seed(table, seed) for seed in SEEDS]
        assert [run.time_budget for run in runs] == [bench.time_budget(space, table, table_seed(table, seed))
                                                    for seed in SEEDS]
    assert bench.consistency_checks(evaluation) == {"every_available_method_ran_every_seed": True,
                                                    "same_seeds_for_all_methods": True}


def test_a_seed_gives_the_same_run_in_this_process_as_in_the_pool(tiny):
    space, table, evaluation = tiny
    for method in METHODS:
        assert bench.simulate_run(method, 1, space, table) == evaluation.runs[method.name][1]


def test_rows_are_json_with_figures_for_every_method(tiny, tmp_path):
    _, _, evaluation = tiny
    versus_random, versus_syne_tune = bench.rows(evaluation, quick=True, plot=bench.write_plot(
        evaluation, tmp_path / "sim_efficiency.html"))
    data = json.loads(json.dumps(versus_random.to_dict()))
    assert data["baseline"] == pytest.approx(np.median([t for t in evaluation.times_to_target("random")]))
    assert set(data["details"]["methods"]) == {method.name for method in METHODS}
    assert all(isinstance(value, bool) for value in data["checks"].values())
    assert (tmp_path / "sim_efficiency.html").stat().st_size > 0
    assert not versus_syne_tune.checks["syne_tune_moasha_ran"] and math.isnan(versus_syne_tune.baseline)


def test_a_method_that_cannot_run_is_reported_not_raised(tiny):
    space, table, _ = tiny
    refused = bench.Method("bad", "a sampler the space does not know", {"sampler": "nope"})
    evaluation = bench.evaluate(space, table, [0], (*METHODS[:2], refused), processes=1)
    assert set(evaluation.runs) == {"ours", "random"} and "the space refuses it" in evaluation.missing["bad"]
    assert "not run: bad" in bench.workload(evaluation, quick=True)


def test_quantiles_count_not_reached_as_infinity():
    assert bench.quantile([1.0, 3.0, math.inf], 0.5) == 3.0
    assert bench.quantile([1.0, 3.0, math.inf, math.inf], 0.5) == math.inf
    assert bench.quantile([1.0, 3.0], 0.25) == 1.5
    assert bench.paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0


def test_syne_tune_moasha_stops_trials_only_at_its_rungs(tiny):
    pytest.importorskip("syne_tune")
    from benchmarks.syne_tune_moasha import syne_tune_moasha

    space, table, _ = tiny
    budget = 8 * bench.time_budget(space, table, 0)  # the grid's full training / 4 workers: some finish
    for ranked in (False, True):
        searcher, scheduler = syne_tune_moasha(space, seed=0, ranked=ranked)
        finished = Simulation(searcher, scheduler, table, 0, 4, budget).run()
        assert [trial.number for trial in finished if trial.finished < budget]  # trials ended before the budget
        assert {trial.epochs for trial in finished if trial.state == "PRUNED" and trial.finished < budget} <= {1, 3}
        assert {trial.epochs for trial in finished if trial.state == "COMPLETE"} == {9}
        assert not scheduler.moasha.trial_info  # every trial left MOASHA


def test_rank_priority_returns_ranks_where_stock_returns_an_order():
    pytest.importorskip("syne_tune")
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import NonDominatedPriority

    from benchmarks.syne_tune_moasha import RankPriority

    # A chain: point 2 dominates point 0, which dominates point 1.
    objectives = np.array([[2.0, 2.0], [3.0, 3.0], [1.0, 1.0]])
    assert RankPriority()(objectives).tolist() == [1, 2, 0]
    assert NonDominatedPriority()(objectives).tolist() == [2, 0, 1]  # stock: the sorted order, not the ranks
