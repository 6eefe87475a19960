"""The searcher's bookkeeping without a Tune loop: states told, told once, retries, lost trials, budget."""

from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher
from search_helpers import write_space

from wrn_search.runs.files import append_jsonl, read_jsonl
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import load_run
from wrn_search.runs.storage import open_storage
from wrn_search.search.samplers import AskTellGridSampler, DistinctSampler, RungTPESampler, make_sampler
from wrn_search.search.searcher import StudySearcher, search_algorithm
from wrn_search.spaces.budget import TrialBudget
from wrn_search.spaces.space import load_space

EPOCHS = 3


def make_searcher(tmp_path, samples=4, write_manifest=True, **search) -> StudySearcher:
    space = load_space(write_space(tmp_path, training={"epochs": EPOCHS}, search={"samples": samples, **search}))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    if write_manifest:
        RunManifest(name="t", study_name="t-study", storage=storage, objectives=list(space.search.objectives),
                    directions=["minimize"] * len(space.search.objectives), tune_path=str(tmp_path / "tune"),
                    dataset="digits", epochs=EPOCHS, samples=samples,
                    epoch_budget=space.search.epoch_budget).save(tmp_path)
    return StudySearcher(space, tmp_path, "t-study", storage, TrialBudget(samples, space.search.epoch_budget))


def result(epoch, val_error=0.1, params=1000, outcome="completed"):
    return {"epoch": epoch, "training_iteration": epoch, "val_error": val_error, "params": params,
            "macs": 5000, "outcome": outcome}


def states(searcher):
    return {t.number: (t.state, t.user_attrs.get("outcome")) for t in searcher.study.get_trials()}


def test_states_told_and_told_once(tmp_path):
    searcher = make_searcher(tmp_path)
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [c["number"] for c in configs] == [0, 1, 2, 3]
    assert all({"name", "params", "macs"} <= set(c) for c in configs)
    searcher.on_trial_complete("t0", result(EPOCHS, 0.1, configs[0]["params"]))
    searcher.on_trial_complete("t1", result(1, 0.5))
    searcher.on_trial_complete("t2", result(2, 1.0, outcome="diverged"))
    searcher.on_trial_complete("t3", None, error=True)
    searcher.on_trial_complete("t0", result(EPOCHS, 0.9))  # a second completion is ignored
    assert states(searcher) == {0: (TrialState.COMPLETE, "completed"), 1: (TrialState.PRUNED, "stopped_early"),
                                2: (TrialState.FAIL, "diverged"), 3: (TrialState.FAIL, "error")}
    assert searcher.study.trials[0].values == [0.1, configs[0]["params"]]
    log = read_jsonl(tmp_path / "trials.jsonl")
    assert [r["number"] for r in log] == [0, 1, 2, 3]
    assert searcher.suggest("t4") is Searcher.FINISHED  # the sample budget is spent


def test_an_errored_trial_rerun_by_resume_ends_complete(tmp_path):
    searcher = make_searcher(tmp_path, samples=1)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", None, error=True)
    searcher.on_trial_complete("t0", result(EPOCHS, 0.2, config["params"]))  # Tune re-ran it (resume_errored)
    trials = searcher.study.get_trials()
    assert [(t.state, t.user_attrs["outcome"]) for t in trials] == [(TrialState.FAIL, "error"),
                                                                     (TrialState.COMPLETE, "completed")]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0
    assert searcher.study.best_trials[0].number == 1
    assert [r["state"] for r in read_jsonl(tmp_path / "trials.jsonl")] == ["FAIL", "COMPLETE"]
    searcher.on_trial_complete("t0", result(EPOCHS, 0.2, config["params"]))  # told once only
    assert len(searcher.study.get_trials()) == 2
    frame = load_run(tmp_path)
    assert frame.set_index("number")["outcome"].to_dict() == {0: "retried", 1: "completed"}


def test_the_search_algorithm_passes_on_a_rerun_it_no_longer_tracks(tmp_path):
    """Ray's ConcurrencyLimiter drops the completion of an errored trial that a resume re-ran."""
    searcher = make_searcher(tmp_path, samples=1)
    limiter = search_algorithm(searcher, max_concurrent=1).searcher
    config = limiter.suggest("t0")
    limiter.on_trial_complete("t0", None, error=True)
    limiter.on_trial_complete("t0", result(EPOCHS, 0.2, config["params"]))
    assert [t.user_attrs["outcome"] for t in searcher.study.get_trials()] == ["error", "completed"]


def test_the_grid_sampler_ends_the_search_when_exhausted(tmp_path):
    searcher = make_searcher(tmp_path, samples=50, sampler="grid", scheduler="none")
    names = []
    while (config := searcher.suggest(f"t{len(names)}")) is not Searcher.FINISHED:
        names.append(config["name"])
        # Optuna's own GridSampler raises on the last grid point's tell.
        searcher.on_trial_complete(f"t{len(names) - 1}", result(EPOCHS, 0.1, config["params"]))
    assert 1 < len(names) < 50 and len(set(names)) == len(names)  # every grid point once, then FINISHED
    assert len(read_jsonl(tmp_path / "trials.jsonl")) == len(names)


def test_restore_asks_again_the_trials_asked_after_the_last_snapshot(tmp_path):
    searcher = make_searcher(tmp_path, samples=3)
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's experiment snapshot
    lost = searcher.suggest("t1")  # asked after it; then the driver is killed
    restored = make_searcher(tmp_path, samples=3)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.lost == [1]
    again = restored.suggest("t1-again")  # a new Tune trial runs the same study trial, with its params
    assert again == lost and states(restored) == {0: (TrialState.RUNNING, None), 1: (TrialState.RUNNING, None)}
    restored.on_trial_complete("t1-again", result(EPOCHS))
    restored.on_trial_complete("t0", result(EPOCHS))
    assert states(restored) == {0: (TrialState.COMPLETE, "completed"), 1: (TrialState.COMPLETE, "completed")}
    assert restored.suggest("t2") is not Searcher.FINISHED  # the lost trial counted once against samples
    assert restored.suggest("t3") is Searcher.FINISHED


def test_restore_reads_a_raised_sample_budget(tmp_path):
    searcher = make_searcher(tmp_path, samples=1)
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    manifest = RunManifest.load(tmp_path)
    manifest.samples = 2
    manifest.save(tmp_path)
    restored = make_searcher(tmp_path, samples=1, write_manifest=False)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t1") is not Searcher.FINISHED
    assert restored.suggest("t2") is Searcher.FINISHED


def test_the_epoch_budget_ends_the_search_once_spent(tmp_path):
    searcher = make_searcher(tmp_path, samples=10, epoch_budget=5)
    searcher.suggest("t0")
    searcher.suggest("t1")
    for epoch in (1, 2):
        searcher.on_trial_result("t0", result(epoch))
    searcher.on_trial_complete("t0", result(EPOCHS))  # Tune tells the last epoch only here
    searcher.on_trial_result("t1", result(1))
    assert searcher.epochs_spent == 4
    assert searcher.suggest("t2") is not Searcher.FINISHED
    searcher.on_trial_result("t1", result(2))
    assert searcher.suggest("t3") is Searcher.FINISHED
    searcher.on_trial_complete("t1", result(EPOCHS))  # running trials still finish and are told
    assert states(searcher)[1] == (TrialState.COMPLETE, "completed")


def test_the_trial_budget_decides_new_trials_and_epochs_left():
    assert TrialBudget(5).new_trials(asked=3, epochs_spent=10**6) == 2
    assert TrialBudget(5).new_trials(asked=6, epochs_spent=0) == 0
    assert TrialBudget(5, epoch_budget=8).new_trials(asked=1, epochs_spent=7) == 4
    assert TrialBudget(5, epoch_budget=8).new_trials(asked=1, epochs_spent=8) == 0
    # 5 trials of 3 epochs, 4 trained and 2 forgone by a trial stopped early; the epoch budget caps it
    assert TrialBudget(5).epochs_left(3, epochs_spent=4, forgone=2) == 9
    assert TrialBudget(5, epoch_budget=6).epochs_left(3, epochs_spent=4, forgone=2) == 2
    assert TrialBudget(5, epoch_budget=6).epochs_left(3, epochs_spent=7) == 0


def test_a_trial_that_reports_epochs_again_counts_them_once(tmp_path):
    searcher = make_searcher(tmp_path, epoch_budget=4)
    searcher.suggest("t0")
    for epoch in (1, 2, 2):  # re-run from epoch 1's checkpoint after a driver kill: epoch 2 again
        searcher.on_trial_result("t0", result(epoch))
    searcher.on_trial_complete("t0", result(EPOCHS))
    assert searcher.epochs_spent == EPOCHS
    assert searcher.suggest("t1") is not Searcher.FINISHED


def test_restore_recounts_the_epochs_from_the_epoch_log_and_rereads_the_budget(tmp_path):
    searcher = make_searcher(tmp_path, samples=10, epoch_budget=5)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot, before any epoch
    # epochs.jsonl as EpochLogger writes it; t1 repeats epoch 2 after a driver kill.
    for trial_id, epoch in [("t0", 1), ("t0", 2), ("t0", 3), ("t1", 1), ("t1", 2), ("t1", 2)]:
        append_jsonl(tmp_path / "epochs.jsonl", {"trial_id": trial_id, "number": int(trial_id[1]), "epoch": epoch})
    restored = make_searcher(tmp_path, samples=10, epoch_budget=5, write_manifest=False)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.epochs_spent == 5 and restored.suggest("t2") is Searcher.FINISHED
    manifest = RunManifest.load(tmp_path)
    manifest.epoch_budget = 7  # wrn-search resume --epoch-budget 7
    manifest.save(tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("t2") is not Searcher.FINISHED
    restored.on_trial_complete("t1", result(EPOCHS))
    assert restored.epochs_spent == 6 and restored.suggest("t3") is not Searcher.FINISHED


def test_single_objective_records_the_last_epoch_as_intermediate_value(tmp_path):
    searcher = make_searcher(tmp_path, objectives=["val_error"], scheduler="asha")
    searcher.suggest("t0")
    searcher.on_trial_result("t0", result(1, 0.5))
    searcher.on_trial_complete("t0", result(2, 0.4))
    trial = searcher.study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.5, 2: 0.4}


def test_samplers_and_storages(tmp_path):
    space = load_space(write_space(tmp_path))
    for name, cls in [("tpe", RungTPESampler), ("nsga2", optuna.samplers.NSGAIISampler),
                      ("random", optuna.samplers.RandomSampler), ("qmc", optuna.samplers.QMCSampler),
                      ("gp", optuna.samplers.GPSampler)]:
        sampler = make_sampler(space.with_overrides(sampler=name, scheduler="none"))
        assert isinstance(sampler, DistinctSampler) and isinstance(sampler.base, cls)
    assert isinstance(make_sampler(space.with_overrides(sampler="grid", scheduler="none")), AskTellGridSampler)
    journal = open_storage(str(tmp_path / "study.log"))
    assert isinstance(journal, optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="^study-storage: cannot open"):
        open_storage("nosuchdialect://nowhere")


def test_a_searcher_saved_by_an_older_version_restores(tmp_path):
    """Tune unpickles the searcher of a run created by an older wrn-search: no __init__, older attributes."""
    searcher = make_searcher(tmp_path, samples=3)
    searcher.suggest("t0")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    state = pickle.loads(path.read_bytes())
    for name in ("now", "started", "start_up", "budget"):
        del state[name]
    state["samples"], state["epoch_budget"] = 3, None  # its budgets before TrialBudget
    path.write_bytes(pickle.dumps(state))
    restored = StudySearcher.__new__(StudySearcher)  # as unpickled from the run's Tuner
    restored.restore(str(path))
    assert restored.suggest("t1") is not Searcher.FINISHED
    restored.on_trial_complete("t1", result(EPOCHS))


def test_the_study_names_its_metrics_after_the_objectives(tmp_path):
    """optuna-dashboard labels its axes with them; a study made before wrn-search named them gets them too."""
    optuna.create_study(study_name="t-study", storage=f"sqlite:///{tmp_path / 'study.db'}",
                        directions=["minimize", "minimize"])  # an older run's study, without names
    searcher = make_searcher(tmp_path)
    assert searcher.study.metric_names == ["val_error", "params"]
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.study._storage.set_study_system_attr(searcher.study._study_id, "study:metric_names", None)
    assert searcher.study.metric_names is None
    restored = StudySearcher.__new__(StudySearcher)  # as unpickled by a resume
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.study.metric_names == ["val_error", "params"]
    single = tmp_path / "single"
    single.mkdir()
    assert make_searcher(single, objectives=["val_error"]).study.metric_names == ["val_error"]
