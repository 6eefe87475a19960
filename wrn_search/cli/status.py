"""``wrn-search status``: where a run stands, read from its study and logs (safe while it runs)."""

from __future__ import annotations

import argparse
import json

HELP = "show a run's trials by state, the best so far, epochs done, and what a resume would do"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def summarize(run_dir: str) -> dict:
    from ..results import load_run
    from ..rundir import RunManifest, trained_epochs

    manifest = RunManifest.load(run_dir)
    frame = load_run(run_dir)
    states = {str(state): int(count) for state, count in frame["state"].value_counts().items()}
    complete = frame[frame["state"] == "COMPLETE"]
    best = complete.sort_values(["val_error", "params"]).head(1)
    unfinished = int(frame["state"].isin(["RUNNING", "WAITING"]).sum())
    # The searcher counts what it asked for: not trials lost to a kill, nor re-runs added after an error.
    retries = frame["retry_of"].notna() if "retry_of" in frame else False
    asked = int((~(frame["outcome"].eq("lost") | retries)).sum())
    # Counted as the searcher counts them against the epoch budget.
    epochs_done = sum(trained_epochs(run_dir).values())
    can_start = manifest.epoch_budget is None or epochs_done < manifest.epoch_budget
    return {
        "run_dir": str(run_dir),
        "name": manifest.name,
        "study_name": manifest.study_name,
        "samples": manifest.samples,
        "epoch_budget": manifest.epoch_budget,
        "trials": len(frame),
        "states": states,
        "epochs_done": epochs_done,
        "full_epochs": manifest.epochs,
        "best": None if best.empty else {key: _plain(best.iloc[0][key]) for key in
                                         ("number", "trial_id", "name", "params", "macs", "val_error")},
        "table": manifest.table,
        "resume_would": None if manifest.table else {"continue_unfinished": unfinished,
                                                     "start_new": max(0, manifest.samples - asked) if can_start else 0},
    }


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.run_dir)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"run {summary['name']}  ({summary['run_dir']})")
    print(f"trials: {summary['trials']} of {summary['samples']}  "
          + "  ".join(f"{state}={count}" for state, count in sorted(summary["states"].items())))
    budget = f" of the epoch budget {summary['epoch_budget']}" if summary["epoch_budget"] else ""
    print(f"epochs trained: {summary['epochs_done']}{budget} (full budget {summary['full_epochs']} per trial)")
    best = summary["best"]
    if best:
        print(f"best so far: #{best['number']} {best['name']}  val error {best['val_error']:.4f}  "
              f"params {best['params']:,.0f}  MACs {best['macs']:,.0f}")  # float when beyond int64
    todo = summary["resume_would"]
    if todo is None:
        print(f"a simulated run over the table {summary['table']}; to change its budgets, simulate again")
    elif todo["continue_unfinished"] or todo["start_new"]:
        print(f"`wrn-search resume {summary['run_dir']}` would continue {todo['continue_unfinished']} unfinished "
              f"trial(s) from their checkpoints and start {todo['start_new']} new one(s)")
    else:
        raise_flags = "--samples N or --epoch-budget N" if summary["epoch_budget"] else "--samples N"
        print(f"the run is complete; `wrn-search resume {raise_flags}` can add trials")
    return 0
