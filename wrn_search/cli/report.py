"""``wrn-search report``: a self-contained HTML report of a run (opens offline, no CDN)."""

from __future__ import annotations

import argparse

HELP = "write a self-contained HTML report of a run: Pareto fronts, learning curves, hypervolume, Pareto table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("-o", "--output", default="report.html", metavar="FILE",
                        help="the HTML file to write (default report.html)")


def run(args: argparse.Namespace) -> int:
    from ..dashboards.report import write_report

    path = write_report(args.run_dir, args.output)
    print(f"wrote {path}")
    return 0
