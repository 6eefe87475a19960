"""``wrn-search dashboard``: the report's views served live while a search runs, or optuna-dashboard."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

HELP = "serve a live dashboard of a run (refreshes while the search runs); --optuna starts optuna-dashboard"

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; "
                             "0.0.0.0 exposes it, unauthenticated)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests for this host name (a reverse proxy's or tunnel's; repeatable). "
                             "Only localhost, the --host name, IP addresses and, off loopback, this machine's "
                             "name are answered otherwise: other names are refused (DNS rebinding)")
    parser.add_argument("--optuna", action="store_true",
                        help="run optuna-dashboard on the run's study storage instead, read-only "
                             "(GET and HEAD only: no deleting or editing studies over HTTP)")


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end the server cleanly, even where the shell started us with SIGINT ignored."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: must be in 0..65535, got {args.port}")
    from wrn_search.runs.layout import RunManifest
    from wrn_search.runs.storage import open_run_storage

    from ..dashboards.live import serve, serve_optuna

    stop_on_signals()
    if args.host not in LOOPBACK:
        print(f"wrn-search dashboard: warning: listening on {args.host}, reachable from the network "
              "without authentication", file=sys.stderr)
    if args.optuna:
        run_dir = Path(args.run_dir).resolve()
        serve_optuna(open_run_storage(run_dir, RunManifest.load(run_dir)), args.host, args.port, args.allow_host)
    else:
        serve(args.run_dir, args.host, args.port, args.allow_host)
    return 0
