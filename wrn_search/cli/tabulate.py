"""``wrn-search tabulate``: record a benchmark table of a space for ``wrn-search simulate``."""

from __future__ import annotations

import argparse
import sys

from .run import gpus_argument

HELP = "train every config of a space's grid to its full epochs with S seeds and write a benchmark table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", metavar="SPACE", help="a search-space YAML file or a ready space; every axis discrete")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..S-1 per config (default: 3)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the table, .csv or .csv.gz; its description goes to the same stem + .json. "
                             "An existing table is completed: recorded curves are skipped")
    parser.add_argument("--address", help="join a Ray cluster: 'auto' or HEAD_IP:6379 (default: start Ray locally)")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    parser.add_argument("--gpus-per-trial", type=gpus_argument, help="GPUs per trial: a number or 'auto'")
    parser.add_argument("--quiet", action="store_true", help="no Ray Tune progress table")


def run(args: argparse.Namespace) -> int:
    from wrn_search.simulation.tabulate import tabulate
    from wrn_search.spaces.space import load_space

    from ..checks import require_int
    from .run import quiet_ray_warnings

    require_int(args.seeds, "--seeds", 1)
    overrides = {key: value for key, value in (("cpus_per_trial", args.cpus_per_trial),
                                               ("gpus_per_trial", args.gpus_per_trial)) if value is not None}
    quiet_ray_warnings()
    space = load_space(args.space).with_overrides(**overrides)
    out = tabulate(space, args.seeds, args.out, address=args.address, verbose=0 if args.quiet else 1,
                   argv=["wrn-search", *sys.argv[1:]])
    print(f"wrn-search: table {out}")
    return 0
