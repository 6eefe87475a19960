"""``wrn-search export``: weights, spec and model card of a trial or of the Pareto set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = ("export a trial (or the Pareto set): weights (state_dict, torch.export, TorchScript, ONNX), spec.json, "
        "model card")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", metavar="ID", help="a Ray trial id (e.g. f2fc04d2) or an Optuna trial number")
    which.add_argument("--pareto", action="store_true", help="every trial of the Pareto set")
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/export); one trial-N folder each")
    parser.add_argument("--format", dest="fmt", default="state_dict",
                        help="weights format: state_dict (default), exported_program (torch.export's .pt2), "
                             "torchscript, or onnx (needs the onnx and onnxscript packages)")
    parser.add_argument("--retrain", type=int, metavar="EPOCHS",
                        help="instead of the search checkpoint, train EPOCHS epochs on train+val and report test error "
                             "(an epoch bar on stderr)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the run directory and each exported folder with its model card)")


def run(args: argparse.Namespace) -> int:
    from wrn_search.runs.export import export_trials

    folders = export_trials(args.run_dir, args.trial, args.pareto, args.out, args.fmt, args.retrain, progress=True)
    cards = [json.loads((folder / "model_card.json").read_text()) for folder in folders]
    if args.json:
        exported = [{"folder": str(folder.resolve()), **card} for folder, card in zip(folders, cards)]
        print(json.dumps({"run_dir": str(Path(args.run_dir).resolve()), "exported": exported}, indent=1))
        return 0
    for folder, card in zip(folders, cards):
        facts = [f"{card['params']:,} params"] + [
            f"{kind} error {card[kind + '_error']:.4f}" for kind in ("val", "test")
            if card[kind + "_error"] is not None]
        print(f"{folder}: {card['name']} ({', '.join(facts)})")
    return 0
