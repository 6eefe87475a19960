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
import os
import sys
from pathlib import Path

from ..recipe import AUGMENTATIONS, PRECISIONS, SCHEDULES, TrainConfig

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
    recipe = parser.add_argument_group("recipe (defaults: the WRN paper's)")
    recipe.add_argument("--epochs", type=int, help="epochs (default 200)")
    recipe.add_argument("--batch-size", type=int, help="batch size (default 128)")
    recipe.add_argument("--lr", type=float, help="initial learning rate (default 0.1)")
    recipe.add_argument("--weight-decay", type=float, help="weight decay (default 5e-4)")
    recipe.add_argument("--schedule", choices=SCHEDULES, help="lr x0.2 at 30/60/80%% (step, default) or cosine")
    recipe.add_argument("--label-smoothing", type=float, help="label smoothing (default 0)")
    recipe.add_argument("--dropout", type=float, help="dropout between convs; overrides a -dP in SPEC")
    recipe.add_argument("--augment", choices=AUGMENTATIONS, help="default: the dataset's (crop_flip for CIFAR)")
    recipe.add_argument("--seed", type=int, help="seed of initialisation, shuffling and dropout (default 0)")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--precision", choices=PRECISIONS,
                         help="auto (default): bf16 autocast where the device has native bf16")
    runtime.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    runtime.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    runtime.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="run directory (default ./wrn-runs/train/<SPEC>-<dataset>)")
    output.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out (start fresh if there is none)")
    output.add_argument("--test", action="store_true", help="also report the test error at the end")
    output.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")


CONFIG_ARGS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "label_smoothing", "augment", "seed",
               "precision", "device", "compile", "num_threads")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data import load_dataset
    from ..spec import WRNSpec
    from ..train import CHECKPOINT_FILE, OutOfMemory, Trainer

    spec = WRNSpec.parse(args.spec, dropout=args.dropout)
    config = TrainConfig(**{name: getattr(args, name) for name in CONFIG_ARGS if getattr(args, name) is not None})
    out = args.out or Path("wrn-runs", "train", f"{spec.name}-{args.dataset}")
    checkpoint = out / CHECKPOINT_FILE
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out: {out} is not a directory")
    if checkpoint.exists() and not args.resume:
        raise FileExistsError(f"--out: {out} already holds a checkpoint; pass --resume to continue it "
                              "or choose another --out")
    dataset = load_dataset(args.dataset, root=args.data_root, download=args.download,
                           val_fraction=args.val_fraction, seed=args.split_seed)
    try:
        trainer = Trainer(spec, dataset, config)
    except OutOfMemory as error:
        print(f"wrn-search train: out_of_memory: {error}", file=sys.stderr)
        return 1
    if args.resume and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
    elif args.resume:
        print(f"wrn-search train: no checkpoint in {out}; starting at epoch 0", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)

    with tqdm(total=config.epochs, initial=trainer.epoch, desc=spec.name, unit="epoch", file=sys.stderr) as bar:
        def on_epoch(metrics: dict) -> None:
            write_metrics(out, trainer.history)
            if metrics["outcome"] == "completed":
                trainer.save_checkpoint(checkpoint)
                bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", val_error=metrics["val_error"])
                bar.update()

        result = trainer.fit(on_epoch)

    summary = {"name": spec.name, "dataset": dataset.info.name, "params": trainer.params, "macs": trainer.macs,
               "epochs": result.epochs, "outcome": result.outcome, "reason": result.reason,
               "val_error": result.val_error, "val_loss": (result.metrics or {}).get("val_loss"),
               "train_loss": (result.metrics or {}).get("train_loss"), "device": str(trainer.device),
               "precision": trainer.precision, "out": str(out), "config": config.to_dict()}
    if args.test:
        test_error, test_loss = trainer.evaluate("test") if result.outcome == "completed" else (None, None)
        summary.update(test_error=test_error, test_loss=test_loss)
    write_atomically(out / "result.json", json.dumps(summary, indent=2) + "\n")

    if args.json:
        print(json.dumps(summary))
    else:
        print(describe(summary))
    if result.outcome != "completed":
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
    write_atomically(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomically(out / "metrics.csv", table.getvalue())


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
