"""The ``wrn-search`` command line: one module per subcommand, imported only when used.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
and keeps its heavy imports (torch, ray) inside ``run`` so ``--help`` stays fast.
``main`` maps errors to exit codes, here and nowhere else: wrn-search's own errors
(:mod:`wrn_search.errors`: bad input, a busy or damaged run, an unreachable cluster, an unwritable
disk: 2; a stalled search: 1) are one line with their ``exit_code``; any other ``ValueError`` or
``OSError`` (a missing path, a library refusing a value) is bad input too. A search stopped by
Ctrl-C or SIGTERM exits 128 + the signal (130, 143).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from .. import __version__
from ..errors import WrnSearchError, first_line

#: Subcommand name -> module in this package.
COMMANDS = {
    "count": "count",
    "space": "space",
    "train": "train",
    "run": "run",
    "tabulate": "tabulate",
    "simulate": "simulate",
    "resume": "resume",
    "status": "status",
    "pareto": "pareto",
    "report": "report",
    "dashboard": "dashboard",
    "export": "export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wrn-search", description="Architecture search over Wide Residual Networks on Ray Tune + Optuna."
    )
    parser.add_argument("--version", action="version", version=f"wrn-search {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"{__name__}.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (WrnSearchError, ValueError, OSError) as error:
        code = getattr(error, "exit_code", 2)
        print(f"wrn-search {args.command}: {'error: ' if code == 2 else ''}{first_line(error)}", file=sys.stderr)
        return code
    except KeyboardInterrupt as interrupt:  # a search says what finished and how to continue
        print(f"wrn-search {args.command}: {str(interrupt) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(interrupt, "signum", signal.SIGINT)  # 130 for Ctrl-C, 143 for SIGTERM


if __name__ == "__main__":
    sys.exit(main())
