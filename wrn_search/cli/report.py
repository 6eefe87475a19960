"""``wrn-search report``: a self-contained HTML report of a run, or a comparison of runs (opens offline, no CDN)."""

from __future__ import annotations

import argparse

HELP = ("write a self-contained HTML report of a run (Pareto fronts, learning curves, hypervolume, Pareto table), "
        "or compare several runs' fronts and hypervolumes")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="a run directory (holds run.json); several are compared (they must share objectives)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="the HTML file to write (default RUN_DIR/report.html; required with several runs)")


def run(args: argparse.Namespace) -> int:
    from ..dashboards.report import report

    path = report(*args.run_dirs, out=args.output)
    print(f"wrote {path}")
    return 0
