"""``wrn-search train``: train one WRN, log metrics per epoch and keep a resumable checkpoint.

Exit status: 0 when training completed; 1 when it ended with another outcome (diverged, or
out of memory, also when the net cannot even be built): the input was fine, the run was not;
2 for bad input, before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import fields
from pathlib import Path

from wrn_search.records import Outcome
from wrn_search.runs.files import write_atomic
from wrn_search.training.recipe import RUNTIME_FIELDS, TrainConfig

HELP = "train one WRN (e.g. WRN-16-4) on a dataset with the paper's recipe; resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="WRN name such as WRN-16-4 or WRN-28-10-B(3,3)-d0.3")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="digits",
                      help="cifar10, cifar100, svhn, digits or synthetic (default digits: bundled, offline)")
    data.add_argument("--data-root", help="directory of the torchvision datasets (default $WRN_SEARCH_DATA "
                                          "or ~/.cache/wrn-search/datasets)")
    data.add_argument("--download", action="store_true", help="let torchvision download missing files")
    data.add_argument("--val-fraction", type=float, default=0.1,
                      help="share of the training set held out for validation (default 0.1)")
    data.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    data.add_argument("--extra", action="store_true",
                      help="svhn: add the 531k extra images to the training set (the paper's train+extra)")
    recipe = add_recipe_arguments(parser)
    recipe.add_argument("--dropout", type=float, help="dropout between convs; overrides a -dP in SPEC")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="run directory (default ./wrn-runs/train/<SPEC>-<dataset>)")
    output.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (start fresh if there is none)")
    output.add_argument("--test", action="store_true", help="also report the test error at the end")
    output.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")


#: Flags whose name is not the field's (kept for the command line users know).
FLAG_NAMES = {"num_threads": "--threads"}


def add_recipe_arguments(parser: argparse.ArgumentParser):
    """One flag per :class:`TrainConfig` field, from the field's own help, type and choices; returns the
    recipe group (the runtime fields get a group of their own)."""
    recipe = parser.add_argument_group("recipe (defaults: the WRN paper's)")
    runtime = parser.add_argument_group("runtime")
    for spec in fields(TrainConfig):
        meta = spec.metadata
        group = runtime if spec.name in RUNTIME_FIELDS else recipe
        flag = FLAG_NAMES.get(spec.name, "--" + spec.name.replace("_", "-"))
        if meta["parse"] is bool:
            group.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction, help=meta["help"])
        else:
            group.add_argument(flag, dest=spec.name, type=meta["parse"], choices=meta["choices"], help=meta["help"])
    return recipe


def recipe_from(args: argparse.Namespace) -> TrainConfig:
    """The recipe the flags give, on top of the paper's defaults."""
    return TrainConfig(**{spec.name: getattr(args, spec.name) for spec in fields(TrainConfig)
                          if getattr(args, spec.name) is not None})


def run(args: argparse.Namespace) -> int:
    """Train; out of memory anywhere (building, resuming, the test set) is one line and exit 1."""
    from wrn_search.training.device import OutOfMemory

    try:
        return train(args)
    except OutOfMemory as error:
        print(f"wrn-search train: out_of_memory: {error}", file=sys.stderr)
        return 1


def train(args: argparse.Namespace) -> int:
    from wrn_search.network.spec import WRNSpec
    from wrn_search.training.checkpoint_format import CHECKPOINT_FILE
    from wrn_search.training.data import load_dataset
    from wrn_search.training.engine import Trainer
    from wrn_search.training.epoch_bar import epoch_bar

    spec = WRNSpec.parse(args.spec, dropout=args.dropout)
    config = recipe_from(args)
    out = args.out or Path("wrn-runs", "train", f"{spec.name}-{args.dataset}")
    checkpoint = out / CHECKPOINT_FILE
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out: {out} is not a directory")
    if checkpoint.exists() and not args.resume:
        raise FileExistsError(f"--out: {out} already holds a checkpoint; pass --resume to continue it "
                              "or choose another --out")
    dataset = load_dataset(args.dataset, root=args.data_root, download=args.download,
                           val_fraction=args.val_fraction, seed=args.split_seed,
                           **({"extra": True} if args.extra else {}))
    trainer = Trainer(spec, dataset, config)
    if args.resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
    elif args.resume:
        print(f"wrn-search train: no checkpoint in {out}; starting at epoch 0", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)

    with epoch_bar(spec.name, config.epochs, trainer.epoch) as advance:
        def on_epoch(metrics: dict) -> None:
            write_metrics(out, trainer.history)
            if metrics["outcome"] == Outcome.COMPLETED:
                trainer.save_checkpoint(checkpoint)
            advance(metrics)

        result = trainer.fit(on_epoch)

    summary = {"name": spec.name, "dataset": dataset.info.name, "params": trainer.params, "macs": trainer.macs,
               "epochs": result.epochs, "outcome": result.outcome, "reason": result.reason,
               "val_error": result.val_error, "val_loss": (result.metrics or {}).get("val_loss"),
               "train_loss": (result.metrics or {}).get("train_loss"), "device": str(trainer.device),
               "precision": trainer.precision, "out": str(out), "config": config.to_dict()}
    if args.test:
        test_error, test_loss = trainer.evaluate("test") if result.outcome == Outcome.COMPLETED else (None, None)
        summary.update(test_error=test_error, test_loss=test_loss)
    write_atomic(out / "result.json", json.dumps(summary, indent=2) + "\n")

    if args.json:
        print(json.dumps(summary))
    else:
        print(describe(summary))
    if result.outcome != Outcome.COMPLETED:
        print(f"wrn-search train: {result.outcome}: {result.reason}", file=sys.stderr)
        return 1
    return 0


def describe(summary: dict) -> str:
    parts = [f"{summary['name']} on {summary['dataset']}: {summary['epochs']} epochs, {summary['outcome']}"]
    for key in ("val_error", "test_error"):
        if summary.get(key) is not None:
            parts.append(f"{key.replace('_', ' ')} {100 * summary[key]:.2f}%")
    parts.append(f"{summary['params']:,} params; files in {summary['out']}")
    return ", ".join(parts)


def write_metrics(out: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from the whole history, so a resumed run's files stay consistent."""
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomic(out / "metrics.csv", table.getvalue())
