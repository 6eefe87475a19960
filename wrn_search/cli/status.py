"""``wrn-search status``: where a run stands (:func:`wrn_search.runs.status.status`), as text or JSON."""

from __future__ import annotations

import argparse
import json

HELP = "show a run's trials by state, the best so far, epochs done, and what a resume would do"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from wrn_search.runs.results import hyperparameter_text
    from wrn_search.runs.status import status

    summary = status(args.run_dir)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"run {summary['name']}  ({summary['run_dir']})")
    reused = sum(summary["reused"].values())
    print(f"trials: {summary['trials'] - reused} of {summary['samples']}{f' (+{reused} reused)' if reused else ''}  "
          + "  ".join(f"{state}={count}" for state, count in sorted(summary["states"].items())))
    for run, count in summary["reused"].items():
        print(f"reused: {count} trial(s) of {run} (not counted against the samples or the epochs)")
    budget = f" of the epoch budget {summary['epoch_budget']}" if summary["epoch_budget"] else ""
    print(f"epochs trained: {summary['epochs_done']}{budget} (full budget {summary['full_epochs']} per trial)")
    best = summary["best"]
    if best:
        print(f"best so far: #{best['number']} {best['name']}  val error {best['val_error']:.4f}  "
              f"params {best['params']:,.0f}  MACs {best['macs']:,.0f}"  # float when beyond int64
              f"  {hyperparameter_text(best['hyperparameters'])}".rstrip())
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
