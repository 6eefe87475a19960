"""Warm start: a new search starts from the trials earlier runs trained, at no cost, and never trains them again."""

from __future__ import annotations

import collections
import dataclasses
import os

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from search_helpers import LEARNING_RATES, run_cli, study_of, write_document, write_space
from table_fixtures import write_synthetic_table

from wrn_search.cli import main
from wrn_search.network.spec import WRNSpec
from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import EPOCH_LOG, SCHEDULER_LOG, RunManifest
from wrn_search.runs.results import SOURCE_RUN, SOURCE_TRIAL, load_run
from wrn_search.runs.status import status
from wrn_search.search.samplers import RUNG_VALUES
from wrn_search.search.schedulers import SuccessiveHalving
from wrn_search.search.warmstart import CONTINUES_EXPERIMENT, CONTINUES_TRIAL, WarmStart
from wrn_search.simulation.simulate import replay, simulate
from wrn_search.simulation.table import load_table
from wrn_search.spaces.schema import config_key
from wrn_search.spaces.space import load_space
from wrn_search.training.recipe import CONTINUES, START_EPOCH

#: The full space of the simulated tests: 3 widths x 2 block types x 2 lrs; its table covers it.
FULL = {
    "dimensions": {"widen_factor": [0.25, 0.5, 1], "block_types": ["B(3,3)", "B(3,1,3)"], "lr": [0.05, 0.1]},
    "dataset": {"name": "digits", "val_fraction": 0.3},
    "training": {"epochs": 9, "batch_size": 64},
    "budget": {"max_params": None},
    "search": {"objectives": ["val_error", "params"], "sampler": "tpe", "scheduler": "moasha", "samples": 12,
               "max_concurrent": 3, "grace_period": 1, "reduction_factor": 3, "seed": 0},
}
#: A sub-space: fewer widths (so k's index differs from the full space's) and one lr.
SUB = {**FULL, "dimensions": {"widen_factor": [0.5, 1], "block_types": ["B(3,3)", "B(3,1,3)"], "lr": [0.1]},
       "search": {**FULL["search"], "samples": 8}}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The full and the sub-space, the full space's synthetic table, and a simulated search of the sub-space."""
    directory = tmp_path_factory.mktemp("warm")
    full = write_space(directory, "full.yaml", **FULL)
    sub = write_space(directory, "sub.yaml", **SUB)
    table = load_table(write_synthetic_table(load_space(full), directory / "table.csv.gz", seeds=2))
    source = simulate(load_space(sub), table, 3, name="sub", storage_path=str(directory / "runs")).run_dir
    return directory, full, table, source


def keys(study: optuna.Study, space) -> list[tuple]:
    return [config_key({"name": t.user_attrs["name"], **t.params}, tuple(space.hyperparameters)) for t in study.trials]


def test_trials_of_a_sub_space_enter_the_study_as_evaluated_with_their_source(bench):
    directory, full, table, source = bench
    space = load_space(full)
    warm = WarmStart.plan(space, [source], directory / "runs" / "new", table=table.source)
    earlier = study_of(source)
    (count,) = warm.counts
    assert count.trials == len(earlier.trials) and count.reused == len(warm.trials) > 0
    assert count.line().startswith(f"warm start: {count.reused} of {count.trials} trials reused from sub; ")
    for trial in warm.trials:
        frozen = trial.trial()
        original = earlier.trials[trial.source_trial]
        assert frozen.user_attrs[SOURCE_RUN] == str(source) and frozen.user_attrs["name"] == original.user_attrs["name"]
        # Params of the new space (k's index moved: 0.5 is the sub-space's first k, the full space's second).
        assert space.suggest(optuna.trial.FixedTrial(frozen.params))["name"] == original.user_attrs["name"]
        assert frozen.state == original.state
        if frozen.state == TrialState.COMPLETE:
            assert frozen.values == original.values
        if frozen.state == TrialState.PRUNED:
            assert frozen.user_attrs["epochs"] == original.user_attrs["epochs"]
            assert frozen.user_attrs[RUNG_VALUES] == original.user_attrs[RUNG_VALUES]


def test_a_warm_started_simulation_never_trains_a_reused_configuration_again_and_costs_them_nothing(bench):
    directory, full, table, source = bench
    space = load_space(full)
    warm = WarmStart.plan(space, [source], directory / "runs" / "replayed", table=table.source)
    simulation = replay(space, table, 3, directory, "replayed", warm_start=warm)
    study = simulation.searcher.study
    reused = len(warm.trials)
    assert [t.user_attrs.get(SOURCE_RUN) for t in study.trials[:reused]] == [str(source)] * reused
    # Not counted against samples: 12 asked on top of the reused ones (the space has 12 configurations in all,
    # so the search ends when every one is tried, continuations included).
    asked = study.trials[reused:]
    assert len(asked) == len(simulation.finished) <= space.search.samples
    closed = {key for key, trial in zip(keys(study, space), study.trials[:reused]) if trial.state != TrialState.PRUNED}
    for key, trial in zip(keys(study, space)[reused:], asked):
        assert key not in closed  # a finished configuration of the earlier run is never asked again
        if CONTINUES in trial.user_attrs:  # a stopped one continues from its epoch
            stopped = study.trials[trial.user_attrs[CONTINUES]]
            assert trial.user_attrs[START_EPOCH] == stopped.user_attrs["epochs"]
    # The reused trials sit in MO-ASHA's rungs with their values there.
    rung = simulation.scheduler.rungs["1"]
    assert {f"reused-{n}" for n in range(reused)} <= set(rung)
    first = next(t for t in warm.trials if t.epochs >= 1)
    number = warm.trials.index(first)
    assert rung[f"reused-{number}"] == [first.curve[1]["val_error"], first.user_attrs["params"]]


def test_configurations_outside_the_space_or_with_another_recipe_are_counted_not_reused(bench):
    directory, full, table, source = bench
    narrow = write_space(directory, "narrow.yaml", **{**FULL, "dimensions": {**FULL["dimensions"], "lr": [0.05]}})
    (count,) = WarmStart.plan(load_space(narrow), [source], directory / "x", table=table.source).counts
    assert count.reused == 0 and count.outside == count.trials - count.superseded - count.unfinished
    decay = write_space(directory, "decay.yaml", **{**FULL, "training": {**FULL["training"], "weight_decay": 5e-3}})
    other_seed = load_space(full).with_overrides(seed=1)  # another validation split
    for space in (load_space(decay), other_seed):
        assert WarmStart.plan(space, [source], directory / "x", table=table.source).counts[0].reused == 0


def test_the_cli_says_the_count_and_results_status_and_front_show_the_reused_trials(bench, capsys):
    directory, full, _, source = bench
    table_file = directory / "table.csv.gz"
    code = main(["simulate", str(full), "--table", str(table_file), "--name", "cli", "--storage-path",
                 str(directory / "runs"), "--workers", "3", "--warm-start", str(source)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrn-search: warm start: " in err and " trials reused from sub; " in err
    run_dir = directory / "runs" / "cli"
    frame = pd.read_csv(run_dir / "results.csv")
    reused = frame[frame[SOURCE_RUN].notna()]
    assert len(reused) > 0 and set(reused[SOURCE_RUN]) == {str(source)}
    assert reused[SOURCE_TRIAL].notna().all()
    front = pd.read_csv(run_dir / "pareto.csv")
    reused_on_front = front[front[SOURCE_RUN].notna()] if SOURCE_RUN in front else front.iloc[:0]
    assert len(reused_on_front)  # the sub-space searched the better lr: its nets are on the front
    for _, row in reused_on_front.iterrows():  # the printed front and the report name the source
        text = f"reused from sub #{int(row[SOURCE_TRIAL])}"
        assert text in out and text in (run_dir / "report.html").read_text()
    summary = status(run_dir)
    assert summary["reused"] == {str(source): len(reused)}
    assert len(load_run(run_dir)) == len(reused) + len(read_jsonl(run_dir / "trials.jsonl"))


@pytest.mark.parametrize("case", ["not_a_run", "own", "dataset", "objectives", "ray_run"])
def test_bad_warm_start_input_is_one_line_exit_2_and_nothing_written(bench, capsys, case):
    directory, full, _, source = bench
    runs = directory / "bad-runs"
    args = ["simulate", str(full), "--table", str(directory / "table.csv.gz"), "--name", "bad",
            "--storage-path", str(runs), "--warm-start"]
    if case == "not_a_run":
        args.append(str(directory))
    elif case == "own":
        args.append(str(runs / "bad"))
    elif case == "objectives":
        single = write_space(directory, "single.yaml", **{**FULL, "search": {**FULL["search"],
                                                                             "objectives": ["val_error"]}})
        args[1] = str(single)
        args.append(str(source))
    elif case == "dataset":
        manifest = RunManifest.load(source)
        other = directory / "other-dataset"
        other.mkdir(exist_ok=True)
        manifest.dataset = "cifar10"
        manifest.save(other)
        args.append(str(other))
    else:
        manifest = RunManifest.load(source)
        ray_run = directory / "ray-run"
        ray_run.mkdir(exist_ok=True)
        manifest.table, manifest.tune_path = None, str(ray_run / "tune")
        manifest.save(ray_run)
        args.append(str(ray_run))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wrn-search simulate: error: warm_start: "), err
    assert not (runs / "bad").exists()


def test_a_rung_added_before_the_search_is_logged_and_replayed_on_resume(tmp_path):
    log = tmp_path / SCHEDULER_LOG
    scheduler = SuccessiveHalving(["val_error", "params"], 9, 1, 3, log)
    scheduler.add(1, "reused-0", [0.2, 100.0], stopped=True)
    assert scheduler._rungs is None  # not loaded yet: the log is replayed into them at first use
    assert scheduler.rungs["1"] == {"reused-0": [0.2, 100.0]} and scheduler.stopped["1"] == ["reused-0"]
    scheduler.add(3, "reused-1", [0.1, 50.0], stopped=False)
    replayed = SuccessiveHalving(["val_error", "params"], 9, 1, 3, log)
    assert replayed.rungs["3"] == {"reused-1": [0.1, 50.0]} and replayed.rungs["1"] == {"reused-0": [0.2, 100.0]}


def _snapshot(directory) -> dict:
    """Every file under ``directory`` with its size and modification time."""
    return {os.path.join(root, name): (os.stat(os.path.join(root, name)).st_size,
                                       os.stat(os.path.join(root, name)).st_mtime_ns)
            for root, _, names in os.walk(directory) for name in names}


@pytest.mark.slow
def test_a_real_search_warm_started_from_a_smaller_one_trains_nothing_again_and_continues_a_stopped_trial(tmp_path):
    small = write_document(tmp_path / "small.yaml",
                           {**LEARNING_RATES, "search": {**LEARNING_RATES["search"], "samples": 3}})
    first = run_cli("run", str(small), "--storage-path", str(tmp_path), "--name", "small", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    source = tmp_path / "small"
    earlier = study_of(source)
    stopped = [t for t in earlier.trials if t.state == TrialState.PRUNED]
    assert stopped, "seed 0 asks a slow rate after a faster one: MO-ASHA stops it at epoch 1"
    before = _snapshot(source)
    larger = write_document(tmp_path / "larger.yaml", {**LEARNING_RATES, "dimensions": {"lr": [0.1, 0.002, 0.0005, 0.02]},
                                                     "search": {**LEARNING_RATES["search"], "samples": 4}})
    second = run_cli("run", str(larger), "--storage-path", str(tmp_path), "--name", "larger", "--warm-start",
                     str(source), cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "warm start: 3 of 3 trials reused from small; 0 outside the space or with another recipe" in second.stderr
    assert _snapshot(source) == before  # the earlier run is read, never written
    run_dir = tmp_path / "larger"
    study = study_of(run_dir)
    space = load_space(str(run_dir / "space.yaml"))
    trial_keys = keys(study, space)
    reused = {key for key, trial in zip(trial_keys, study.trials) if SOURCE_RUN in trial.user_attrs}
    assert len(reused) == 3
    epochs = collections.defaultdict(list)
    for record in read_jsonl(run_dir / EPOCH_LOG):
        epochs[record["number"]].append(record["epoch"])
    new = [(key, trial) for key, trial in zip(trial_keys, study.trials) if SOURCE_RUN not in trial.user_attrs]
    # Only the new learning rate trains from epoch 1; no configuration of the first run is trained again.
    assert [key for key, trial in new if CONTINUES not in trial.user_attrs] == [
        key for key in set(trial_keys) if key not in reused]
    continued = [trial for _, trial in new if CONTINUES in trial.user_attrs]
    assert continued, "a stopped trial of the first run is continued"
    for trial in continued:
        origin = study.trials[trial.user_attrs[CONTINUES]]
        assert origin.user_attrs[SOURCE_RUN] == str(source) and origin.state == TrialState.PRUNED
        assert trial.user_attrs[CONTINUES_EXPERIMENT] == RunManifest.load(source).tune_path
        assert trial.user_attrs[CONTINUES_TRIAL] == origin.user_attrs[SOURCE_TRIAL]
        start = trial.user_attrs[START_EPOCH]
        assert start == origin.user_attrs["epochs"] and epochs[trial.number] == list(range(start + 1, 4))
    # Reused trials are the study's, so a resume keeps them, and a resume counts only the trials this run asked.
    summary = status(run_dir)
    assert summary["reused"] == {str(source): 3}
    assert summary["resume_would"] == {"continue_unfinished": 0, "start_new": 4 - len(new)}


def nets_of(space, start_up: list[dict]) -> list:
    """The nets (dropout 0) that start-up architecture parameters stand for."""
    by_params = {tuple(sorted(space.structure.params(spec).items())): spec for spec in space.architectures()}
    return [by_params[tuple(sorted(params.items()))] for params in start_up]


def test_a_warm_started_search_spreads_its_start_up_trials_over_the_nets_no_reused_trial_has(bench):
    """A bad guide (an earlier run of other nets) must not make a search slower than a cold one: its reused nets
    are known, so the start-up spread goes to the others (benchmarks/README.md, warm start's bad guide)."""
    from wrn_search.search.samplers import START_UP_TRIALS
    from wrn_search.search.searcher import StudySearcher

    directory, full, table, source = bench
    space = load_space(full)
    warm = WarmStart.plan(space, [source], directory / "runs" / "spread", table=table.source)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="spread", storage=storage, directions=["minimize"] * 2)
    warm.apply(study, None)
    searcher = StudySearcher(space, directory, "spread", "", space.trial_budget(), storage=storage)
    reused = {dataclasses.replace(WRNSpec.parse(t.user_attrs["name"]), dropout=0.0) for t in warm.trials}
    others = [spec for spec in space.architectures() if spec not in reused]
    assert reused and others  # the sub-space's nets were reused, the full space's narrowest were not
    assert sorted(nets_of(space, searcher.start_up), key=str) == sorted(others, key=str)  # fewer than 10: all
    # A cold search's spread is the one it always was.
    cold = StudySearcher(space, directory, "cold", "", space.trial_budget(),
                         storage=optuna.storages.InMemoryStorage())
    assert cold.start_up == space.spread_over_params(START_UP_TRIALS, space.search.seed)
    assert len(cold.start_up) == len(list(space.architectures())) == 9


def test_the_start_up_spread_cuts_the_nets_it_does_not_leave_out_into_strata():
    space = load_space("digits-wrn")
    specs = sorted(space.architectures(), key=lambda spec: space.cost(spec)[0])
    largest = specs[3 * len(specs) // 4:]  # what a bad guide searched
    rest = specs[:3 * len(specs) // 4]
    nets = nets_of(space, space.spread_over_params(10, 0, leave_out=set(largest)))
    assert len(nets) == 10 and not set(nets) & set(largest)
    sizes = sorted(space.cost(spec)[0] for spec in nets)
    for stratum, size in enumerate(sizes):  # one net from each tenth of the nets left
        members = rest[stratum * len(rest) // 10:(stratum + 1) * len(rest) // 10]
        assert space.cost(members[0])[0] <= size <= space.cost(members[-1])[0]
    assert space.spread_over_params(10, 0, leave_out=set(specs)) == []
