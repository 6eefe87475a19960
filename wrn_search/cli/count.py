"""``wrn-search count``: parameters, MACs and layers of named WRNs, from the closed-form cost model."""

from __future__ import annotations

import argparse
import json

from wrn_search.network.spec import WRNSpec, format_number

from ..checks import require_int

HELP = "print depth, layers, parameters and MACs of WRN specs (e.g. WRN-28-10, WRN-40-2-B(3,1,3))"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="WRN names such as WRN-28-10-B(3,3)-d0.3")
    parser.add_argument("--classes", type=int, default=10, help="output classes (default 10)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    parser.add_argument("--input-size", type=int, default=32, help="input height = width in pixels (default 32)")
    parser.add_argument("--json", action="store_true", help="one JSON object per spec, one per line")


def describe(spec: WRNSpec, classes: int, in_channels: int, input_size: int) -> dict:
    return {
        **spec.to_dict(),
        "convs_per_block": spec.convs_per_block,
        "conv_layers": spec.num_conv_layers,
        "widths": list(spec.widths),
        "params": spec.num_params(classes, in_channels),
        "macs": spec.macs(input_size, classes, in_channels),
        "classes": classes,
        "in_channels": in_channels,
        "input_size": input_size,
    }


def run(args: argparse.Namespace) -> int:
    for field, value, minimum, maximum in (("--classes", args.classes, 1, 1_000_000),
                                           ("--in-channels", args.in_channels, 1, 1024),
                                           ("--input-size", args.input_size, 8, 65536)):
        require_int(value, field, minimum, maximum)
    rows = [describe(WRNSpec.parse(name), args.classes, args.in_channels, args.input_size) for name in args.specs]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = f"{'name':<28} {'N':>3} {'l':>2} {'depth':>5} {'convs':>5} {'k':>5} {'params':>14} {'MACs':>16}"
    print(header)
    for row in rows:
        print(f"{row['name']:<28} {row['blocks_per_group']:>3} {row['convs_per_block']:>2} {row['depth']:>5} "
              f"{row['conv_layers']:>5} {format_number(row['widen_factor']):>5} {row['params']:>14,} "
              f"{row['macs']:>16,}")
    return 0
