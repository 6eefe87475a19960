"""``wrn-search resume``: continue a run after a crash, a kill or a reboot."""

from __future__ import annotations

import argparse

from .run import add_output_arguments

HELP = "resume a search from its run directory; finished trials are kept, unfinished ones continue"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory printed by `wrn-search run`")
    parser.add_argument("--samples", type=int, help="raise the total number of trials")
    parser.add_argument("--epoch-budget", type=int, help="raise the total training epochs of all trials")
    parser.add_argument("--address", help="join a Ray cluster: 'auto' or HEAD_IP:6379 (run on a cluster node; Ray "
                                          "Client ray:// is not supported) (default: local Ray)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from wrn_search.dashboards.report import write_report
    from wrn_search.search.interrupts import interrupt_gracefully
    from wrn_search.search.orchestrate import resume_search

    from .run import quiet_ray_warnings, show_result

    quiet_ray_warnings()
    with interrupt_gracefully():  # from the start: a stop while the data loads stops the search once it runs
        results = resume_search(args.run_dir, samples=args.samples, address=args.address,
                                epoch_budget=args.epoch_budget, verbose=int(args.verbose), progress=not args.quiet,
                                on_results=write_report)
    return show_result(results, args.json)
