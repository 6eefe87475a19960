"""The Optuna side of a search: samplers, study storage, and a searcher that tells the truth.

Ray's ``OptunaSearch`` tells a trial stopped early by the scheduler as COMPLETE
with its early-epoch error, which poisons the sampler and the Pareto front.
:class:`StudySearcher` tells it PRUNED, tells diverged and out-of-memory trials
FAIL, never tells a trial twice, records the outcome in the study's user
attributes and in ``trials.jsonl``, and stops asking after ``samples`` trials
(read from ``run.json`` on restore, so ``wrn-search resume --samples`` can raise it).

It also stops asking once the trials have trained ``search.epoch_budget`` epochs in all
(finished trials plus what running trials have reported so far); running trials finish,
so the total may overshoot by what they still train. A trial's epochs are the highest
epoch it reported, so a trial retried from its checkpoint is not counted twice. On
restore the count is rebuilt from ``epochs.jsonl`` and the budget re-read from ``run.json``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from wrn_search.compat import upgrade_searcher_state
from wrn_search.records import FAILED_OUTCOMES, Outcome
from wrn_search.runs.files import append_jsonl
from wrn_search.runs.journal import synced_once
from wrn_search.runs.layout import TRIAL_LOG, RunManifest
from wrn_search.runs.logs import EpochsSpent
from wrn_search.runs.storage import open_storage
from wrn_search.search.samplers import (
    RUNG_VALUES,
    START_UP_TRIALS,
    DistinctSampler,
    RungTPESampler,
    make_sampler,
)
from wrn_search.search.warmstart import CONTINUES_EXPERIMENT, CONTINUES_TRIAL, continued_from, reused_nets
from wrn_search.spaces.budget import TrialBudget
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.recipe import CONTINUES, START_EPOCH

#: What a run or a simulation says when its searcher stopped because every configuration was tried.
EXHAUSTED = "every configuration of the space has been tried; no new trial started"
#: The config keys of a trial that continues one stopped early (:meth:`StudySearcher._continuation`).
CONTINUATION_KEYS = (CONTINUES, START_EPOCH, CONTINUES_EXPERIMENT, CONTINUES_TRIAL)

class StudySearcher(OptunaSearch):
    """``OptunaSearch`` over a :class:`SearchSpace`, with honest trial states, a sample and an epoch budget.

    A new TPE study starts with its start-up trials spread over the params axis
    (:meth:`SearchSpace.spread_over_params`); the hyperparameters of those trials stay random.
    """

    def __init__(self, space: SearchSpace, run_dir: str | Path, study_name: str, storage_url: str,
                 budget: TrialBudget, storage: optuna.storages.BaseStorage | None = None):
        objectives = list(space.search.objectives)
        multi = len(objectives) > 1
        super().__init__(
            space=space.suggest,
            metric=objectives if multi else objectives[0],
            mode=["min"] * len(objectives) if multi else "min",
            sampler=make_sampler(space),
            study_name=study_name,
            storage=storage if storage is not None else open_storage(storage_url),
        )
        self._name_metrics()
        sampler = self.study.sampler
        # Start-up spread unless a search asked trials already (a warm start's reused trials were never asked).
        fresh = (isinstance(getattr(sampler, "base", sampler), RungTPESampler)
                 and not any("trial_id" in trial.user_attrs for trial in self.study.get_trials(deepcopy=False)))
        #: Architecture parameters of the start-up trials still to ask (saved with the searcher).
        # A warm start's reused nets are known already: the spread covers the others.
        self.start_up = space.spread_over_params(START_UP_TRIALS, space.search.seed,
                                                 leave_out=reused_nets(self.study)) if fresh else []
        self.run_dir = str(run_dir)
        self.budget = budget
        self.full_epochs = space.training.epochs
        #: The epochs each Tune trial id has trained.
        self.spent = EpochsSpent()
        #: Tune trial ids whose re-run after an error was told as a new trial.
        self.retried: set[str] = set()
        #: When each trial was asked for, by ``clock`` (the simulator replaces it with its own).
        self.now: Callable[[], float] = time.time
        self.started: dict[str, float] = {}
        #: Whether the search ended because every configuration of a finite space was tried (:data:`EXHAUSTED`).
        self.exhausted = False
        #: Study trials left RUNNING by a kill that Tune never recorded: asked again before new ones.
        self.lost: list[int] = self._unknown_running()

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def _name_metrics(self) -> None:
        """Name the study's values after the objectives, so optuna-dashboard labels its axes with them;
        also in a study made before wrn-search did this. Copies of the study (a simulated run's) keep them."""
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(self._objectives())

    @property
    def epochs_spent(self) -> int:
        return self.spent.total

    def _out_of_budget(self) -> bool:
        """Whether a new trial would exceed ``samples`` or the epoch budget, or every configuration was tried."""
        asked = {trial._trial_id for trial in self._ot_trials.values()}  # a lost trial asked again counts once
        return not self.budget.new_trials(len(asked), self.epochs_spent) or self._space_exhausted()

    def _space_exhausted(self) -> bool:
        """Whether every configuration of a finite space was tried (``exhausted``: the run says so at its end)."""
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler):
            return sampler.is_exhausted(self.study)
        self.exhausted = isinstance(sampler, DistinctSampler) and sampler.exhausted(self.study)
        return self.exhausted

    @synced_once
    def suggest(self, trial_id: str) -> dict | None:
        sampler = self.study.sampler
        with sampler.pinned(self.study) if isinstance(sampler, DistinctSampler) else nullcontext():
            return self._suggest(trial_id)

    def _suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self.lost:
            # The same study trial, run by a new Tune trial: it finds its checkpoints by number.
            frozen = self.study.get_trials(deepcopy=False)[self.lost.pop(0)]
            self._ot_trials[trial_id] = optuna.Trial(self.study, frozen._trial_id)
        if trial_id not in self._ot_trials and self._out_of_budget():
            return Searcher.FINISHED
        while trial_id not in self._ot_trials and self.start_up:
            fixed = self.start_up.pop(0)
            if isinstance(self.study.sampler, DistinctSampler) and not self.study.sampler.open_with(self.study, fixed):
                continue  # every configuration of that net was tried already (reused by a warm start)
            self.study.enqueue_trial(fixed)  # asked at once: never left WAITING in the study
            break
        config = super().suggest(trial_id)
        self.started.setdefault(trial_id, self.now())  # a trial asked again keeps its start
        trial = self._ot_trials[trial_id]
        trial.set_user_attr("trial_id", trial_id)
        return {**config, "number": trial.number, **self._continuation(trial_id, trial)}

    def _continuation(self, trial_id: str, trial: optuna.Trial) -> dict:
        """Where a trial whose configuration was stopped early before goes on from: that trial's number and epoch.

        The trainable loads the stopped trial's checkpoint and trains only the epochs after it; the
        scheduler judges it from the next rung on. Its own user attributes say so (``continues``,
        ``start_epoch``), so a trial asked again after a kill continues from the same place.
        """
        attrs = self.study._storage.get_trial(trial._trial_id).user_attrs
        if CONTINUES not in attrs:
            sampler = self.study.sampler
            if not isinstance(sampler, DistinctSampler):
                return {}
            earlier = sampler.latest_trials(self.study, but=trial.number).get(sampler.key(trial.params))
            if earlier is None or earlier.state != TrialState.PRUNED:
                return {}
            attrs = {CONTINUES: earlier.number, START_EPOCH: int(earlier.user_attrs.get("epochs", 0)),
                     **continued_from(earlier)}  # a trial reused from an earlier run: its checkpoints there
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
        return {key: attrs[key] for key in CONTINUATION_KEYS if key in attrs}

    def classify(self, result: dict | None, error: bool) -> tuple[TrialState, Outcome]:
        """The study state and the outcome word of a finished Tune trial."""
        if error or not result:
            return TrialState.FAIL, Outcome.ERROR
        outcome = Outcome(result.get("outcome", Outcome.COMPLETED))
        if outcome in FAILED_OUTCOMES:
            return TrialState.FAIL, outcome
        if int(result.get("epoch", 0)) < self.full_epochs:
            return TrialState.PRUNED, Outcome.STOPPED_EARLY
        return TrialState.COMPLETE, Outcome.COMPLETED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.spent.count(trial_id, result.get("epoch"))
        super().on_trial_result(trial_id, result)  # reports intermediate values for single-objective pruning

    @synced_once
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Tune skips on_trial_result for a trial's last result.
        self.spent.count(trial_id, (result or {}).get("epoch"))
        if trial_id not in self._ot_trials:
            return
        trial = self._ot_trials[trial_id]
        stored = self.study._storage.get_trial(trial._trial_id)
        state, outcome = self.classify(result, error)
        rerun_after_error = (stored.state == TrialState.FAIL and stored.user_attrs.get("outcome") == Outcome.ERROR
                             and trial_id not in self.retried)
        if rerun_after_error and state != TrialState.FAIL:
            # A resume re-ran a trial that had errored: record the finished run as a new trial.
            self.retried.add(trial_id)
            self._tell_retry(stored, trial_id, result, state, outcome)
            return
        if trial_id in self._completed_trials or stored.state.is_finished():
            self._completed_trials.add(trial_id)
            return  # told already, e.g. before a driver kill after which Tune re-ran it from its checkpoint
        self._completed_trials.add(trial_id)
        epochs = int(result.get("epoch", 0)) if result else 0
        if not isinstance(self.metric, list) and result and result.get(self.metric) is not None \
                and epochs not in stored.intermediate_values:
            trial.report(float(result[self.metric]), epochs)  # Tune skips on_trial_result for the last result
        trial.set_user_attr("outcome", outcome)
        trial.set_user_attr("epochs", epochs)
        if state == TrialState.PRUNED and epochs:  # where it was stopped: what the sampler ranks it by
            trial.set_user_attr(RUNG_VALUES, [float(result[key]) for key in self._objectives()])
        self.study.tell(trial, self._values(result, state), state=state)
        self._log(trial_id, trial.number, stored.user_attrs, state, outcome, result)

    def _tell_retry(self, failed: optuna.trial.FrozenTrial, trial_id: str, result: dict | None,
                    state: TrialState, outcome: str) -> None:
        """Keep the errored trial as FAIL and add the re-run as its own trial, with ``retry_of`` naming it."""
        epochs = int(result.get("epoch", 0)) if result else 0
        attrs = {**failed.user_attrs, "outcome": outcome, "epochs": epochs, "retry_of": failed.number}
        values = self._values(result, state)
        self.study.add_trial(optuna.trial.create_trial(
            state=state, params=failed.params, distributions=failed.distributions, user_attrs=attrs,
            values=values, intermediate_values=failed.intermediate_values if values is None else None,
        ))
        number = self.study.get_trials(deepcopy=False)[-1].number
        self._log(trial_id, number, attrs, state, outcome, result)

    def _values(self, result: dict | None, state: TrialState) -> list[float] | None:
        return [float(result[key]) for key in self._objectives()] if state == TrialState.COMPLETE else None

    def _log(self, trial_id: str | None, number: int, attrs: dict, state: TrialState, outcome: str,
             result: dict | None) -> None:
        append_jsonl(Path(self.run_dir) / TRIAL_LOG, {
            "trial_id": trial_id, "number": number, "name": attrs.get("name"), "state": state.name,
            "outcome": outcome, "epochs": int(result.get("epoch", 0)) if result else 0,
            "val_error": result.get("val_error") if result else None,
            "params": attrs.get("params"), "macs": attrs.get("macs"), "started": self.started.get(trial_id),
            "time": self.now(),
        })

    def _objectives(self) -> list[str]:
        return self.metric if isinstance(self.metric, list) else [self.metric]

    def _unknown_running(self) -> list[int]:
        """Numbers of the study's RUNNING trials that no Tune trial of this searcher runs."""
        known = {trial.number for trial in self._ot_trials.values()}
        return [frozen.number for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if frozen.number not in known]

    def restore(self, checkpoint_path: str) -> None:
        """Restore, re-read the budgets, recount the epochs spent, queue the trials the study holds
        RUNNING that Tune never knew (asked after its last snapshot) to be asked again, and name the
        metrics of a study created before wrn-search named them."""
        super().restore(checkpoint_path)
        upgrade_searcher_state(self.__dict__)
        manifest = RunManifest.load(self.run_dir)
        self.budget = manifest.trial_budget
        self.spent = EpochsSpent.read(self.run_dir)  # the durable log, newer than Tune's snapshot
        self.lost = self._unknown_running()
        self._name_metrics()


class ResumableSearchGenerator(SearchGenerator):
    """Tune's ``SearchGenerator`` that takes its budget from the searcher again on restore.

    Tune snapshots that the searcher said FINISHED and the trial total, and restores
    both, so a resume of a finished run would never ask for more trials, not even
    after ``resume --samples`` raised the budget. The searcher's own budgets, re-read
    from ``run.json``, decide instead: if they are spent it says FINISHED again.
    """

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False
        self._total_samples = max(self._total_samples, study_searcher(self).budget.samples)


def study_searcher(search_alg) -> StudySearcher | None:
    """The :class:`StudySearcher` inside Tune's search algorithm (through the concurrency limiter), if any."""
    searcher = search_alg
    while not isinstance(searcher, StudySearcher) and hasattr(searcher, "searcher"):
        searcher = searcher.searcher
    return searcher if isinstance(searcher, StudySearcher) else None


class RerunAwareConcurrencyLimiter(ConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter``, passing on the completion of a trial it no longer tracks.

    An errored trial leaves the limiter; when a resume re-runs it (``resume_errored``),
    Ray's limiter drops its completion, and the study would never hear how the re-run ended.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.live_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
        else:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)


def search_algorithm(searcher: StudySearcher, max_concurrent: int) -> ResumableSearchGenerator:
    """What Tune gets as ``search_alg``: the searcher behind a concurrency limit, resumable."""
    return ResumableSearchGenerator(RerunAwareConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
