"""A study never trains one configuration twice; asked again for a trial stopped early, it continues it."""

from __future__ import annotations

import collections

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import LEARNING_RATES, run_cli, study_of, write_document, write_space

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import EPOCH_LOG
from wrn_search.search.samplers import DistinctSampler, make_sampler
from wrn_search.spaces.schema import config_key
from wrn_search.spaces.space import load_space
from wrn_search.training.recipe import CONTINUES, START_EPOCH


def keys(study: optuna.Study, space) -> list[tuple]:
    return [config_key({"name": t.user_attrs["name"], **t.params}, tuple(space.hyperparameters)) for t in study.trials]


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2"])
def test_no_sampler_proposes_a_configuration_twice_until_the_space_is_tried(tmp_path, sampler):
    """As many asks as configurations, each told at once: all distinct; then the space is exhausted."""
    space = load_space(write_space(tmp_path, dimensions={"widen_factor": [1, 2], "block_types": ["B(3,3)", "B(3,1)"],
                                                         "depth": {"min": 10, "max": 16}, "lr": [0.05, 0.1]},
                                   search={"sampler": sampler, "scheduler": "none"}))
    distinct = make_sampler(space)
    assert isinstance(distinct, DistinctSampler)
    configurations = len(list(space.grid_configs()))
    assert configurations > 4 and {distinct.key(params) for params in distinct.grid()} == {
        config_key(config, ("lr",)) for config in space.grid_configs()}
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=distinct)
    for _ in range(configurations):
        assert not distinct.exhausted(study)
        trial = study.ask()
        config = space.suggest(trial)
        study.tell(trial, [config["params"] * 1e-6, config["params"]])
    assert len(set(keys(study, space))) == configurations
    assert distinct.exhausted(study)


def test_a_configuration_stopped_early_stays_open_and_is_continued(tmp_path):
    space = load_space(write_document(tmp_path / "space.yaml", {**LEARNING_RATES, "dimensions": {"lr": [0.05, 0.1]}}))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler(space))
    first = study.ask()
    space.suggest(first)
    first.set_user_attr("epochs", 1)
    study.tell(first, state=TrialState.PRUNED)
    assert not study.sampler.exhausted(study)
    second = study.ask()
    space.suggest(second)
    assert not study.sampler.exhausted(study)  # the first configuration is still open to a continuation
    study.tell(second, state=TrialState.FAIL)
    third = study.ask()
    assert space.suggest(third)["lr"] == first.params["lr"]  # the only one open

@pytest.mark.slow
def test_a_real_search_trains_each_configuration_once_and_continues_a_stopped_trial_from_its_checkpoint(tmp_path):
    space_path = write_document(tmp_path / "space.yaml", LEARNING_RATES)
    finished = run_cli("run", str(space_path), "--storage-path", str(tmp_path), "--name", "d", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "wrn-search: every configuration of the space has been tried; no new trial started" in finished.stderr
    assert len(study_of(tmp_path / "d").trials) < LEARNING_RATES["search"]["samples"]  # ended before its samples
    run_dir = tmp_path / "d"
    study = study_of(run_dir)
    space = load_space(str(run_dir / "space.yaml"))
    trials = study.trials
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
    # Each configuration trained from epoch 1 once; the others continue the trial stopped before them.
    fresh = [key for key, trial in zip(keys(study, space), trials) if CONTINUES not in trial.user_attrs]
    assert sorted(fresh) == sorted(set(fresh)) and len(fresh) == 3
    continued = [trial for trial in trials if CONTINUES in trial.user_attrs]
    assert continued, "with the slow learning rates stopped at epoch 1, a later ask continues one"
    epochs = collections.defaultdict(list)
    for record in read_jsonl(run_dir / EPOCH_LOG):
        epochs[record["number"]].append(record["epoch"])
    for trial in continued:
        stopped = trials[trial.user_attrs[CONTINUES]]
        assert stopped.state == TrialState.PRUNED and trial.user_attrs[START_EPOCH] == stopped.user_attrs["epochs"]
        # Its first epoch is the one after the stopped trial's checkpoint: nothing trained twice.
        assert epochs[trial.number] == list(range(trial.user_attrs[START_EPOCH] + 1, len(epochs[trial.number])
                                                  + trial.user_attrs[START_EPOCH] + 1))
    # Every configuration ends trained to the full 3 epochs, across its trials.
    for key in set(keys(study, space)):
        chain = [t for k, t in zip(keys(study, space), trials) if k == key]
        assert chain[-1].state == TrialState.COMPLETE and sum(len(epochs[t.number]) for t in chain) == 3


def test_a_net_whose_every_configuration_was_tried_is_not_open(tmp_path):
    """What the searcher checks before it asks a start-up net (a warm start may have reused it already)."""
    space = load_space(write_document(tmp_path / "space.yaml", {**LEARNING_RATES, "architectures": ["WRN-10-1", "WRN-16-1"],
                                             "dimensions": {"lr": [0.05]}}))
    sampler = make_sampler(space)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.enqueue_trial({"architecture": "WRN-10-1-B(3,3)"})
    trial = study.ask()
    config = space.suggest(trial)
    study.tell(trial, [0.1, config["params"]])
    assert not sampler.open_with(study, {"architecture": "WRN-10-1-B(3,3)"})
    assert sampler.open_with(study, {"architecture": "WRN-16-1-B(3,3)"})
