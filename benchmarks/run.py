"""Run the benchmarks: ``python benchmarks/run.py [--quick] [--only NAME] [--threads N] [--json OUT]``.

Prints one table (figure, ours, baseline, ratio, device) and each benchmark's
workload and checks, and writes the rows as JSON. A ratio > 1 means ours wins.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import importlib  # noqa: E402

from benchmarks.common import Row, log  # noqa: E402

#: Benchmark name -> its module's ``run(quick, threads)``, which returns one Row or a list of them.
BENCHMARKS = {name: (lambda quick, threads, name=name: importlib.import_module(f"benchmarks.{name}").run(
    quick=quick, threads=threads)) for name in (
    "loader", "train_step", "trial_overhead", "search_efficiency", "cost_model", "sim_efficiency",
    "decision_latency", "gpu_packing", "cluster_driver", "warm_start",
)}


def run_benchmarks(names: list[str], quick: bool, threads: int | None) -> list[Row]:
    """Each benchmark in turn; Ray's and Tune's chatter goes to stderr so stdout stays the table."""
    rows = []
    for name in names:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            result = BENCHMARKS[name](quick=quick, threads=threads)
        rows.extend(result if isinstance(result, list) else [result])
        log(f"{name}: {time.perf_counter() - start:.0f} s")
    return rows


def _number(value: float) -> str:
    """Three significant digits, thousands separated, no exponent."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_table(rows: list[Row]) -> str:
    header = ("figure", "ours", "baseline", "ratio", "device")
    lines = [(f"{r.name} ({r.unit})", _number(r.ours), _number(r.baseline), f"{_number(r.ratio)}x", r.device)
             for r in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    fmt = " | ".join(f"{{:{'<' if i in (0, 4) else '>'}{w}}}" for i, w in enumerate(widths))
    table = [fmt.format(*header), "-+-".join("-" * w for w in widths), *(fmt.format(*line) for line in lines)]
    notes = [f"{r.name}: {r.workload}; checks: "
             + ", ".join(f"{k}={'ok' if v else 'FAILED'}" for k, v in r.checks.items()) for r in rows]
    return "\n".join(table + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (under 10 minutes on 2 CPU cores)")
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for the timed code (default: all cores)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the rows as a JSON list here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run_benchmarks(args.only or list(BENCHMARKS), args.quick, args.threads)
    print(format_table(rows))
    print(f"\n{'quick' if args.quick else 'full'} mode, {time.perf_counter() - start:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps([row.to_dict() for row in rows], indent=2) + "\n")
    return 0 if all(all(row.checks.values()) for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
