"""``wrn-search simulate``: a search replayed on a benchmark table, on a simulated clock."""

from __future__ import annotations

import argparse
import sys

HELP = "run a search on a simulated clock over a benchmark table (no training; seconds for 1,000 trials)"
#: The sample cap of a search bounded only by --time-budget.
UNBOUNDED_SAMPLES = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="SPACE", help="a search-space YAML file or a ready space such as digits-wrn")
    parser.add_argument("--table", required=True, metavar="NAME_OR_FILE",
                        help="a shipped table (digits-wrn) or a .csv/.csv.gz written by wrn-search tabulate")
    parser.add_argument("--workers", type=int, help="trials trained at once (default: search.max_concurrent)")
    parser.add_argument("--seed", type=int, help="sampler seed; also picks the table seed replayed (seed mod seeds)")
    parser.add_argument("--samples", type=int, help="number of trials (overrides search.samples)")
    parser.add_argument("--epoch-budget", type=int, help="total training epochs of all trials")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="simulated seconds; the search ends then (alone, it lifts the sample cap)")
    parser.add_argument("--name", help="run name (default: <space>-sim-<date>-<time>)")
    parser.add_argument("--storage-path", default="wrn-runs", help="parent of the run directory (default: wrn-runs)")
    parser.add_argument("--study-storage", metavar="URL",
                        help="Optuna storage: any SQLAlchemy URL or a journal file path "
                             "(default: study.log in the run)")
    parser.add_argument("--warm-start", nargs="+", default=[], metavar="RUN_DIR",
                        help="earlier simulated runs of the table whose trials that fit this space enter the study "
                             "as already evaluated, at no cost")


def run(args: argparse.Namespace) -> int:
    from wrn_search.dashboards.report import write_report
    from wrn_search.runs.layout import check_run_name
    from wrn_search.simulation.simulate import simulate
    from wrn_search.simulation.table import load_table
    from wrn_search.spaces.space import load_space

    from .run import show_result

    if args.name is not None:  # '' and '../x' too: checked before anything is written
        check_run_name(args.name)
    samples = args.samples
    if samples is None and args.time_budget is not None and args.epoch_budget is None:
        samples = UNBOUNDED_SAMPLES
    overrides = {key: value for key, value in (("samples", samples), ("epoch_budget", args.epoch_budget),
                                               ("seed", args.seed)) if value is not None}
    space = load_space(args.space).with_overrides(**overrides)
    table = load_table(args.table)
    workers = space.search.max_concurrent if args.workers is None else args.workers
    results = simulate(space, table, workers, time_budget=args.time_budget, name=args.name,
                       storage_path=args.storage_path, study_storage=args.study_storage,
                       argv=["wrn-search", *sys.argv[1:]], warm_start=args.warm_start,
                       on_results=write_report)
    return show_result(results)
