"""``wrn-search pareto``: the Pareto set of a run, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wrn_search.runs.results import RunResults

HELP = "print the Pareto front (val error vs params or MACs) of a run directory"

#: Columns shown and exported, in order.
FRONT_COLUMNS = ["number", "trial_id", "name", "params", "macs", "val_error", "epochs", "state", "outcome", "ties"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--x", choices=["params", "macs"], default=None,
                        help="cost traded against val error (default: the study's own objectives)")
    parser.add_argument("--csv", metavar="FILE", help="also write the front to FILE as CSV")
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")


def run(args: argparse.Namespace) -> int:
    from wrn_search.runs.results import RunResults

    return print_front(RunResults.load(args.run_dir), args.x, args.csv, args.json)


def print_front(results: RunResults, x: str | None = None, csv: str | None = None, as_json: bool = False) -> int:
    """``wrn-search pareto``'s output from loaded results (over error and ``x``, else the study's objectives),
    so the end of ``run`` prints it from the read that wrote the run's files."""
    from wrn_search.runs.results import (
        SOURCE_RUN,
        SOURCE_TRIAL,
        hyperparameter_columns,
        hyperparameter_text,
        source_text,
    )

    from ..pareto import hypervolume, pareto_front, reference_point

    frame = results.trials
    objectives = ["val_error", x] if x else list(results.manifest.objectives)
    front = pareto_front(frame, objectives) if x else results.front
    if csv:
        front.to_csv(csv, index=False)
    sources = [column for column in (SOURCE_RUN, SOURCE_TRIAL) if column in front]  # reused from earlier runs
    rows = front[FRONT_COLUMNS + hyperparameter_columns(front) + sources]  # lr=... tells apart two trials of one net
    if as_json:
        print(json.dumps(json.loads(rows.to_json(orient="records")), indent=1))
        return 0
    reference = reference_point(frame, objectives)
    volume = hypervolume(front[objectives].to_numpy(dtype=float), reference)
    print(f"{'#':>4} {'name':<28} {'params':>12} {'MACs':>14} {'val error':>9} {'epochs':>6}  trial id")
    for row in rows.to_dict("records"):
        # Costs are float when one is beyond int64 (load_run); ",.0f" prints both kinds as whole numbers.
        tied = f"  (+{row['ties']} same net, same values)" if row["ties"] else ""
        print(f"{row['number']:>4} {row['name']:<28} {row['params']:>12,.0f} {row['macs']:>14,.0f} "
              f"{row['val_error']:>9.4f} {row['epochs']:>6}  {source_text(row) or row['trial_id']}  "
              f"{hyperparameter_text(row)}".rstrip()
              + tied)
    early = int((frame["state"] == "PRUNED").sum())
    ties = int(front["ties"].sum())
    repeats = f", {ties} more that repeat a net on it with the same values" if ties else ""
    print(f"{len(front)} of {len(frame)} trials on the front{repeats} ({early} stopped early, not eligible); "
          f"hypervolume {volume:.6g} w.r.t. reference "
          f"({', '.join(f'{o}={r:g}' for o, r in zip(objectives, reference))})")
    return 0
