"""``wrn-search run``: launch a search from a space file, locally or on a Ray cluster."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wrn_search.runs.results import RunResults

HELP = "run an architecture search from a search space (a YAML file or a ready space's name)"


def gpus_argument(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 or 'auto', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="SPACE", help="a search-space YAML file, or a ready space such as quickstart")
    parser.add_argument("--name", help="run name (default: <space>-<date>-<time>)")
    parser.add_argument("--storage-path", default="wrn-runs",
                        help="parent of the run directory, or a URI Ray Tune accepts (s3://...) (default: wrn-runs)")
    parser.add_argument("--study-storage", metavar="URL",
                        help="Optuna storage: any SQLAlchemy URL or a journal file path "
                             "(default: study.log, a journal file, in the run)")
    parser.add_argument("--samples", type=int, help="number of trials (overrides search.samples)")
    parser.add_argument("--epoch-budget", type=int,
                        help="total training epochs of all trials (overrides search.epoch_budget)")
    parser.add_argument("--address", help="join a Ray cluster: 'auto' or HEAD_IP:6379 (run on a cluster node; Ray "
                                          "Client ray:// is not supported) (default: start Ray locally)")
    parser.add_argument("--gpus-per-trial", type=gpus_argument, help="GPUs per trial: a number or 'auto'")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    parser.add_argument("--max-concurrent", type=int, help="trials running at once")
    parser.add_argument("--seed", type=int, help="sampler and data-split seed")
    parser.add_argument("--warm-start", nargs="+", default=[], metavar="RUN_DIR",
                        help="earlier runs whose trials that fit this space and recipe enter the study as already "
                             "evaluated, at no cost")
    add_output_arguments(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``run`` and ``resume`` print: by default the run directory, one progress line and the front."""
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--verbose", action="store_true",
                       help="also Ray Tune's status and per-trial tables (the progress line then prints plain lines)")
    shown.add_argument("--quiet", action="store_true", help="no progress: print only the result (the front)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object: run directory, report, trials by state, the front")


def quiet_ray_warnings() -> None:
    """Per-epoch checkpoints force frequent experiment snapshots by design: don't warn about them."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def run(args: argparse.Namespace) -> int:
    from wrn_search.dashboards.report import write_report
    from wrn_search.runs.layout import check_run_name
    from wrn_search.search.interrupts import interrupt_gracefully
    from wrn_search.search.orchestrate import run_search
    from wrn_search.spaces.space import load_space

    overrides = {key: value for key, value in (
        ("samples", args.samples), ("epoch_budget", args.epoch_budget), ("max_concurrent", args.max_concurrent),
        ("seed", args.seed), ("gpus_per_trial", args.gpus_per_trial), ("cpus_per_trial", args.cpus_per_trial),
    ) if value is not None}
    if args.name is not None:  # '' and '../x' too: checked before anything is written
        check_run_name(args.name)
    quiet_ray_warnings()
    with interrupt_gracefully():  # from the start: a stop while the data loads stops the search once it runs
        space = load_space(args.space).with_overrides(**overrides)
        results = run_search(space, name=args.name, storage_path=args.storage_path, address=args.address,
                             study_storage=args.study_storage, verbose=int(args.verbose), progress=not args.quiet,
                             warm_start=args.warm_start, on_results=write_report)
    return show_result(results, args.json)


def show_result(results: RunResults, as_json: bool = False) -> int:
    """End of ``run``, ``resume`` and ``simulate`` (their files and report are written): where everything is and
    the front, or one JSON object, from the ``results`` those were written from (no second read)."""
    from ..dashboards.report import REPORT_FILE
    from . import pareto

    if as_json:
        print(json.dumps(result_summary(results), indent=1))
        return 0
    run_dir = results.run_dir
    print(f"wrn-search: results in {run_dir} (results.csv, pareto.csv); report: {run_dir / REPORT_FILE}")
    return pareto.print_front(results)


def result_summary(results: RunResults) -> dict:
    """The run directory, its report, trials by state and the front (rows as ``wrn-search pareto --json``)."""
    from ..dashboards.report import REPORT_FILE
    from .pareto import FRONT_COLUMNS

    frame = results.trials
    return {"run_dir": str(results.run_dir), "report": str(results.run_dir / REPORT_FILE), "trials": len(frame),
            "states": results.states,
            "front": json.loads(results.front[FRONT_COLUMNS].to_json(orient="records"))}

