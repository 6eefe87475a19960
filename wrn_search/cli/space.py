"""``wrn-search space``: what a search space allows, how many nets fit its budget, and how big they are."""

from __future__ import annotations

import argparse
import json
import math

from wrn_search.network.spec import WRNSpec
from wrn_search.spaces.space import SearchSpace, load_space

HELP = "summarise a search space (a YAML file or a ready space such as quickstart): dimensions, feasible nets, sizes"

#: Bins of the params histogram, evenly spaced in log(params).
BINS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="FILE_OR_NAME", help="a search space YAML file or a ready space name")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def summarize(space: SearchSpace) -> dict:
    """Dimensions, settings and the feasible set's size range and params histogram, as plain data."""
    nets = sorted(((*space.cost(spec), spec) for spec in space.architectures()), key=lambda row: row[:2])

    def net(row: tuple[int, int, WRNSpec]) -> dict:
        return {"name": row[2].name, "params": row[0], "macs": row[1]}

    document = space.to_dict()
    return {
        "source": space.source,
        **{key: document[key] for key in ("dimensions", "architectures") if key in document},
        "dataset": document["dataset"],
        # The whole recipe a trial trains with: the space's training section over the paper's defaults.
        "training": space.training.to_dict(),
        "budget": document["budget"],
        "search": document["search"],
        "feasible_count": space.feasible_count,
        "continuous": list(space.continuous),
        "min_params": nets[0][0],
        "max_params": nets[-1][0],
        "min_macs": min(row[1] for row in nets),
        "max_macs": max(row[1] for row in nets),
        "smallest": net(nets[0]),
        "largest": net(nets[-1]),
        "histogram": histogram([row[0] for row in nets]),
    }


def histogram(values: list[int]) -> list[dict]:
    """Counts of ``values`` (sorted) in ``BINS`` log-spaced bins from the smallest to the largest."""
    if values[0] == values[-1]:
        return [{"low": values[0], "high": values[-1], "count": len(values)}]
    low, high = math.log(values[0]), math.log(values[-1])
    width = (high - low) / BINS
    edges = [round(math.exp(low + width * i)) for i in range(BINS)] + [values[-1]]
    counts = [0] * BINS
    for value in values:
        counts[min(BINS - 1, int((math.log(value) - low) / width))] += 1
    return [{"low": edges[i], "high": edges[i + 1], "count": counts[i]} for i in range(BINS)]


def run(args: argparse.Namespace) -> int:
    summary = summarize(load_space(args.space))
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"search space {summary['source']}")
    for section in ("dimensions", "architectures", "dataset", "training", "budget", "search"):
        if section in summary:
            print(f"  {section}: {json.dumps(summary[section])}")
    searched = ", ".join(summary["continuous"])
    print(f"feasible architectures: {summary['feasible_count']:,}" + (f" (continuous: {searched})" if searched else ""))
    for label in ("smallest", "largest"):
        row = summary[label]
        print(f"{label + ':':<10} {row['name']:<24} {row['params']:>14,} params {row['macs']:>16,} MACs")
    print("params histogram:")
    top = max(row["count"] for row in summary["histogram"])
    for row in summary["histogram"]:
        bar = "#" * math.ceil(30 * row["count"] / top) if row["count"] else ""
        print(f"  {row['low']:>13,} - {row['high']:>13,}  {row['count']:>5}  {bar}")
    return 0
