"""Export trained trials of a run: weights (state_dict, torch.export, TorchScript or ONNX), spec and model card.

The weights come from the trial's newest checkpoint (``checkpoint.pt``
written by :meth:`wrn_search.training.engine.Trainer.save_checkpoint`), found under the
run's ``tune_path`` by :class:`wrn_search.runs.checkpoints.TrialCheckpoints`; or, with ``retrain``, from
training the spec again on train+val, which also measures its test error.
"""

from __future__ import annotations

import html
import json
import re
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from wrn_search.checks import require_choice
from wrn_search.errors import BadInput, first_line
from wrn_search.network.model import WideResNet, build_model
from wrn_search.network.spec import WRNSpec
from wrn_search.pareto import pareto_front
from wrn_search.records import Outcome
from wrn_search.runs.checkpoints import TrialCheckpoints
from wrn_search.runs.layout import SPACE_FILE, RunManifest
from wrn_search.runs.results import hyperparameter_text, hyperparameters, load_run
from wrn_search.training.checkpoint_format import CHECKPOINT_FILE, CHECKPOINT_FORMAT, CheckpointError
from wrn_search.training.data import dataset_info
from wrn_search.training.epoch_bar import epoch_bar

FORMATS = ("state_dict", "exported_program", "torchscript", "onnx")
WEIGHT_FILES = {"state_dict": "model.pt", "exported_program": "model.pt2", "torchscript": "model.torchscript.pt",
                "onnx": "model.onnx"}
#: Characters that open Markdown syntax inline: code, emphasis, links and images, headings, table cells.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|!~])")


@dataclass
class Model:
    """A trained network and where its weights came from."""

    spec: WRNSpec
    module: WideResNet
    source: str
    test_error: float | None = None


def select_trials(frame: pd.DataFrame, trial: str | None, pareto_columns: list[str] | None) -> pd.DataFrame:
    """The trial named by Ray trial id or Optuna number, or the Pareto set over ``pareto_columns``."""
    if pareto_columns is not None:
        return pareto_front(frame, pareto_columns)
    rows = frame[frame["trial_id"].astype(str) == str(trial)]  # Ray ids can be all digits: try them first
    if rows.empty and str(trial).isdigit():
        rows = frame[frame["number"].astype(str) == str(trial)]
    if rows.empty:
        raise ValueError(f"--trial: no trial {trial!r} in this run (give a Ray trial id or an Optuna trial number)")
    return rows


def trial_checkpoint_model(tune_path: str, number: int) -> Model:
    """The network of study trial ``number``'s newest checkpoint that loads (local or remote): one a kill or
    a bad disk damaged gives way to the one before it, as when the trial itself resumes."""
    checkpoints = TrialCheckpoints(tune_path, number)
    found = checkpoints.newest_first()
    if not found:
        raise FileNotFoundError(f"checkpoint: no {CHECKPOINT_FILE} for trial {number} under {tune_path}")
    damaged = []
    for stored in found:
        try:
            with checkpoints.local(stored) as path:
                model = load_checkpoint_model(path)
        except ValueError as error:
            damaged.append(str(error))
            continue
        return replace(model, source=f"{stored.path}/{CHECKPOINT_FILE} (epoch {stored.epoch})")
    raise CheckpointError(f"{damaged[0]}; no older checkpoint of trial {number} loads either" if len(damaged) > 1
                          else damaged[0])


def load_checkpoint_model(path: Path) -> Model:
    """The network in a trainer checkpoint, in eval mode on the CPU; no dataset needed. A file that is
    damaged (truncated, garbage, another pickle) is a :class:`CheckpointError` naming it."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of garbage before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"checkpoint: {path} is damaged ({type(error).__name__}: {first_line(error)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint: {path} is not a {CHECKPOINT_FORMAT} file")
    try:
        spec = WRNSpec.from_dict(state["spec"])
        module = build_model(spec, state["dataset"]["num_classes"], state["dataset"]["in_channels"])
        module.load_state_dict(state["model"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint: {path} is incomplete or does not fit its net "
                              f"({type(error).__name__})") from None
    return Model(spec, module.eval(), f"{path} (epoch {state['epoch']})")


def retrain(run_dir: Path, number: int, spec: WRNSpec, epochs: int, progress: bool = False) -> Model:
    """Train ``spec`` with the trial's hyperparameters for ``epochs`` on train+val (an epoch bar on stderr
    with ``progress``); measure test error."""
    from wrn_search.runs.storage import open_study
    from wrn_search.spaces.space import load_space
    from wrn_search.training.engine import Trainer

    manifest = RunManifest.load(run_dir)
    space = load_space(str(run_dir / SPACE_FILE))
    trial_params = open_study(run_dir, manifest).trials[number].params
    # The machine is the retrain's alone: device "auto" takes its GPU if it has one.
    config = replace(space.training.for_trial(trial_params), epochs=epochs)
    trainer = Trainer(spec, space.dataset.load(space.search.seed).merged(), config)
    with epoch_bar(spec.name, epochs) if progress else nullcontext() as advance:
        result = trainer.fit(advance)
    if result.outcome != Outcome.COMPLETED:
        raise ValueError(f"--retrain: {spec.name} ended {result.outcome}: {result.reason}")
    test_error, _ = trainer.evaluate("test")
    module = trainer.model.to("cpu", memory_format=torch.contiguous_format).eval()
    return Model(spec, module, f"retrained {epochs} epochs on train+val", test_error)


def example_input(dataset: str, batch: int = 2) -> torch.Tensor:
    info = dataset_info(dataset)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, info.in_channels, *info.input_size, generator=generator)


def save_weights(model: Model, fmt: str, dataset: str, path: Path) -> None:
    """Write the weights in ``fmt``; every format but ``state_dict`` takes a dynamic batch dimension."""
    require_choice(fmt, "--format", FORMATS)
    example = example_input(dataset)
    batch = {"x": {0: torch.export.Dim("batch")}}
    if fmt == "state_dict":
        torch.save(model.module.state_dict(), path)
    elif fmt == "exported_program":
        torch.export.save(torch.export.export(model.module, (example,), dynamic_shapes=batch), str(path))
    elif fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            # PyTorch deprecates TorchScript (exported_program is its successor); who asks for it knows.
            warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
            torch.jit.save(torch.jit.trace(model.module, example), str(path))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter needs it and onnxscript)
            import onnxscript  # noqa: F401
        except ImportError:
            raise BadInput("--format onnx: needs the onnx and onnxscript packages: "
                           "pip install onnx onnxscript") from None
        torch.onnx.export(model.module, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes=batch, dynamo=True, external_data=False, verbose=False)


def model_card(row: pd.Series, model: Model, manifest: RunManifest, fmt: str) -> dict:
    info = dataset_info(manifest.dataset)
    return {
        "name": model.spec.name, "spec": model.spec.to_dict(), "run": manifest.name, "trial_number": int(row["number"]),
        "trial_id": row["trial_id"], "state": row["state"], "outcome": row["outcome"],
        "params": int(row["params"]), "macs": int(row["macs"]),
        "val_error": float(row["val_error"]) if pd.notna(row["val_error"]) else None,
        "epochs": int(row["epochs"]), "hyperparameters": hyperparameters(row), "test_error": model.test_error,
        "weights": model.source,
        "format": fmt, "file": WEIGHT_FILES[fmt],
        "dataset": {"name": info.name, "num_classes": info.num_classes, "in_channels": info.in_channels,
                    "input_size": list(info.input_size), "mean": list(info.mean), "std": list(info.std)},
        "input": "float32 [N, C, H, W]: pixels / 255, then (x - mean) / std per channel",
    }


def markdown_text(value: object) -> str:
    """``value`` as literal text in Markdown: run names, trial ids and paths come from the user, and a
    backtick or ``<`` in them would otherwise become code or raw HTML wherever the card is rendered."""
    text = html.escape(" ".join(str(value).split()), quote=False)  # one line: no new block or table row
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def card_markdown(card: dict) -> str:
    """The card as Markdown; every string from the run goes through :func:`markdown_text`."""
    data = card["dataset"]
    test = f"{card['test_error']:.4f}" if card["test_error"] is not None else "not measured (export with --retrain)"
    val = f"{card['val_error']:.4f}" if card["val_error"] is not None else "none"
    name, run, trial_id, outcome, weights, dataset, image_input = map(markdown_text, (
        card["name"], card["run"], card["trial_id"], card["outcome"], card["weights"], data["name"], card["input"]))
    return "\n".join([
        f"# {name}", "",
        f"Wide ResNet found by wrn-search run {run} (trial {card['trial_number']}, {trial_id}).", "",
        "| | |", "| --- | --- |",
        f"| parameters | {card['params']:,} |", f"| MACs per image | {card['macs']:,} |",
        f"| validation error | {val} after {card['epochs']} epochs ({outcome}) |",
        *([f"| searched hyperparameters | {hyperparameter_text(card['hyperparameters'])} |"]
          if card["hyperparameters"] else []),
        f"| test error | {test} |", f"| weights | {weights} |",
        f"| file | `{card['file']}` ({card['format']}) |",
        f"| dataset | {dataset}: {data['num_classes']} classes, {data['in_channels']} x "
        f"{data['input_size'][0]} x {data['input_size'][1]} |",
        f"| input | {image_input}; mean {data['mean']}, std {data['std']} |", "",
        "Rebuild the network: `build_model(WRNSpec.from_dict(json.load(open('spec.json'))), "
        f"{data['num_classes']}, {data['in_channels']})`.", "",
    ])


def export_trials(run_dir: str | Path, trial: str | None = None, pareto: bool = False, out: str | Path | None = None,
                  fmt: str = "state_dict", retrain_epochs: int | None = None, progress: bool = False) -> list[Path]:
    """Export one trial or the Pareto set; returns the folders written (``<out>/trial-<number>``).

    ``progress`` shows an epoch bar on stderr for each net retrained.
    """
    require_choice(fmt, "--format", FORMATS)
    if (trial is None) == (not pareto):
        raise ValueError("export: give exactly one of --trial ID and --pareto")
    if retrain_epochs is not None and retrain_epochs < 1:
        raise ValueError(f"--retrain: must be >= 1 epochs, got {retrain_epochs}")
    run_dir = Path(run_dir).resolve()
    manifest = RunManifest.load(run_dir)
    if manifest.table is not None and retrain_epochs is None:
        raise ValueError(f"run_dir: {run_dir} is a simulated run (table {manifest.table}): no weights were trained; "
                         "export with --retrain EPOCHS to train the chosen nets")
    rows = select_trials(load_run(run_dir), trial, list(manifest.objectives) if pareto else None)
    out = Path(out) if out is not None else run_dir / "export"
    folders = []
    for _, row in rows.iterrows():
        spec = WRNSpec.from_columns(row)
        if retrain_epochs is not None:
            model = retrain(run_dir, int(row["number"]), spec, retrain_epochs, progress)
        else:
            model = trial_checkpoint_model(manifest.tune_path, int(row["number"]))
            if model.spec != spec:
                raise ValueError(f"checkpoint: holds {model.spec.name}, but trial {row['number']} is {spec.name}")
        folder = out / f"trial-{int(row['number'])}"
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(model, fmt, manifest.dataset, folder / WEIGHT_FILES[fmt])
        card = model_card(row, model, manifest, fmt)
        (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
        (folder / "model_card.md").write_text(card_markdown(card))
        folders.append(folder)
    return folders
