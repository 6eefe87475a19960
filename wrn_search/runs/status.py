"""Where a run stands: trials by state, the best so far, epochs trained, and what a resume would do.

Read from the study and the logs only, so it is safe while the run is going;
``wrn-search status`` prints it and :func:`wrn_search.status` returns it.
"""

from __future__ import annotations

from pathlib import Path

from wrn_search.plain import plain
from wrn_search.runs.logs import EpochsSpent
from wrn_search.runs.results import SOURCE_RUN, RunResults, hyperparameters, reused

#: Fields of the best trial that :func:`status` reports, besides its searched hyperparameters.
BEST_FIELDS = ("number", "trial_id", "name", "params", "macs", "val_error")


def status(run_dir: str | Path) -> dict:
    """A run's standing as a JSON-ready dict; ``resume_would`` is None for a simulated run (never resumed).

    ``best`` is the full-budget trial with the lowest error (fewest params on a tie).
    """
    results = RunResults.load(run_dir)
    manifest, frame = results.manifest, results.trials
    complete = frame[frame["state"] == "COMPLETE"]
    best = complete.sort_values(["val_error", "params"]).head(1)
    sources = frame.loc[reused(frame), SOURCE_RUN] if SOURCE_RUN in frame else frame.iloc[:0, 0]
    epochs_done = EpochsSpent.read(run_dir).total  # as the searcher counts them against the epoch budget
    return {
        "run_dir": str(run_dir),
        "name": manifest.name,
        "study_name": manifest.study_name,
        "samples": manifest.samples,
        "epoch_budget": manifest.epoch_budget,
        "trials": len(frame),
        "states": results.states,
        # trials of earlier runs (--warm-start): in the study, costing neither samples nor epochs
        "reused": {str(run): int(count) for run, count in sources.value_counts(sort=False).items()},
        "epochs_done": epochs_done,
        "full_epochs": manifest.epochs,
        "best": None if best.empty else {**{key: plain(best.iloc[0][key]) for key in BEST_FIELDS},
                                         "hyperparameters": hyperparameters(best.iloc[0])},
        "table": manifest.table,
        "resume_would": None if manifest.table else resume_plan(results, epochs_done),
    }


def resume_plan(results: RunResults, epochs_done: int) -> dict:
    """What ``wrn-search resume`` would do: unfinished trials it continues, new ones it starts.

    Trials are counted as the searcher counts what it asked for: not re-runs added after an error,
    nor trials reused from earlier runs.
    """
    frame = results.trials
    retries = frame["retry_of"].notna() if "retry_of" in frame else False
    asked = int((~(retries | reused(frame))).sum())
    return {"continue_unfinished": results.unfinished,
            "start_new": results.manifest.trial_budget.new_trials(asked, epochs_done)}
