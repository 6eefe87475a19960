"""``wrn-search run``: launch a search from a space file, locally or on a Ray cluster."""

from __future__ import annotations

import argparse
import os

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
                        help="Optuna storage: any SQLAlchemy URL or a journal file path (default: study.db in the run)")
    parser.add_argument("--samples", type=int, help="number of trials (overrides search.samples)")
    parser.add_argument("--epoch-budget", type=int,
                        help="total training epochs of all trials (overrides search.epoch_budget)")
    parser.add_argument("--address", help="join a Ray cluster: 'auto' or HEAD_IP:6379 (run on a cluster node; Ray Client ray:// is not supported) (default: start Ray locally)")
    parser.add_argument("--gpus-per-trial", type=gpus_argument, help="GPUs per trial: a number or 'auto'")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    parser.add_argument("--max-concurrent", type=int, help="trials running at once")
    parser.add_argument("--seed", type=int, help="sampler and data-split seed")
    parser.add_argument("--quiet", action="store_true", help="no Ray Tune progress table")


def quiet_ray_warnings() -> None:
    """Per-epoch checkpoints force frequent experiment snapshots by design: don't warn about them."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def run(args: argparse.Namespace) -> int:
    from ..search import run_search
    from ..space import load_space

    overrides = {key: value for key, value in (
        ("samples", args.samples), ("epoch_budget", args.epoch_budget), ("max_concurrent", args.max_concurrent),
        ("seed", args.seed), ("gpus_per_trial", args.gpus_per_trial), ("cpus_per_trial", args.cpus_per_trial),
    ) if value is not None}
    quiet_ray_warnings()
    space = load_space(args.space).with_overrides(**overrides)
    run_dir = run_search(space, name=args.name, storage_path=args.storage_path, address=args.address,
                         study_storage=args.study_storage, verbose=0 if args.quiet else 1)
    return finish(run_dir)


def finish(run_dir) -> int:
    """End of ``run`` and ``resume``: write the report, say where everything is, print the front."""
    from ..dashboards.report import write_report
    from . import pareto

    report = write_report(run_dir, run_dir / "report.html")
    print(f"wrn-search: results in {run_dir} (results.csv, pareto.csv); report: {report}")
    print(f"wrn-search: live dashboard: wrn-search dashboard {run_dir}")
    return pareto.run(argparse.Namespace(run_dir=str(run_dir), x=None, csv=None, json=False))
