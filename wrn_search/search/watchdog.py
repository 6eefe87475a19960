"""Keep a search from waiting forever: repair Tune's lost trial errors, and stop a search that stalled.

When Tune cannot reuse a trial's actor (``FunctionTrainable.reset_config`` gives up after
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` because the previous trial's thread has not ended), it
sets the new trial ERROR without telling the search algorithm or the scheduler (Ray 2.60,
``TuneController._on_trial_reset``). The concurrency limiter then holds the trial's slot
forever; once every slot is held so, the searcher offers nothing, nothing runs, and Tune
waits for a trial that never comes. :class:`SearchWatchdog` tells the search algorithm of
such a trial what Tune tells it of any other error, so the study records it FAIL (outcome
``error``, retried by ``resume`` as every errored trial is) and the slot goes to a new trial.

Whatever the cause, a search with nothing running and nothing offered for
``stall_seconds`` stops and says so (:class:`~wrn_search.errors.SearchStalled`) instead
of waiting: Tune asks the searcher once a second for up to 10 minutes before a step
ends, so the stop comes within ``stall_seconds`` plus that wait.
"""

from __future__ import annotations

import logging
import time

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import SearchAlgorithm

logger = logging.getLogger(__name__)

#: Seconds with no trial pending or running, and none offered by the searcher, before a search stops.
STALL_SECONDS = 300.0
#: Tune statuses of a trial that is, or will be, running.
LIVE = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED)


def live_trial_ids(search_alg: SearchAlgorithm) -> set[str]:
    """Ids of the trials the search algorithm's concurrency limiter counts as running."""
    searcher = getattr(search_alg, "searcher", None)
    while searcher is not None and not hasattr(searcher, "live_trials"):
        searcher = getattr(searcher, "searcher", None)
    return set(searcher.live_trials) if searcher is not None else set()


class SearchWatchdog(tune.Callback):
    """After every step of Tune's loop: report lost trial errors, then check for a stall (module docstring)."""

    def __init__(self, search_alg: SearchAlgorithm, stall_seconds: float = STALL_SECONDS):
        self.search_alg = search_alg
        self.stall_seconds = stall_seconds
        #: When the search was last seen with nothing live (None: something is live).
        self.idle_since: float | None = None
        #: Why the search was stopped, or None.
        self.stalled: str | None = None

    def on_step_end(self, iteration: int, trials: list[Trial], **info) -> None:
        self.report_lost_errors(trials)
        self.check_stall(trials)

    def report_lost_errors(self, trials: list[Trial]) -> None:
        """Tell the search algorithm of every ERROR trial its limiter still counts as running."""
        held = live_trial_ids(self.search_alg)
        for trial in trials:
            if trial.status == Trial.ERROR and trial.trial_id in held:
                logger.warning("trial %s ended in an error Ray did not report to the searcher (most likely "
                               "its actor could not be reused); it is recorded as failed and its slot given "
                               "to a new trial", trial.trial_id)
                self.search_alg.on_trial_complete(trial.trial_id, error=True)

    def check_stall(self, trials: list[Trial]) -> None:
        if any(trial.status in LIVE for trial in trials) or self.search_alg.is_finished():
            self.idle_since = None
            return
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        elif now - self.idle_since >= self.stall_seconds and self.stalled is None:
            self.stalled = (f"stalled: no trial ran and the searcher offered none for "
                            f"{now - self.idle_since:.0f} s with budget left")
            logger.warning("%s; stopping the search", self.stalled)
            self.search_alg.set_finished()  # Tune's loop ends once its search algorithm has finished

