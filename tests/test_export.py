"""Export: the trial's newest checkpoint, spec and model card; TorchScript and ONNX give the checkpoint's logits;
--json prints one object, --retrain shows an epoch bar, and TorchScript's deprecation is not repeated to the user."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from run_fixtures import STANDARD_TRIALS, make_run

from wrn_search.cli import main
from wrn_search.network.model import build_model
from wrn_search.network.spec import WRNSpec
from wrn_search.runs.checkpoints import write_epoch
from wrn_search.runs.export import example_input, trial_checkpoint_model
from wrn_search.training.checkpoint_format import CHECKPOINT_FILE
from wrn_search.training.data import load_dataset
from wrn_search.training.engine import TrainConfig, Trainer

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
CONFIG = TrainConfig(epochs=1, batch_size=64, device="cpu")


def checkpoint_folder(run: Path, number: int, index: int) -> Path:
    """Where a trial writes a checkpoint: ``tune/NNNNN-<net>-<trial id>/checkpoint_<index>``."""
    return run / "tune" / f"{number:05d}-WRN-x-7a1b2_{number:05d}" / f"checkpoint_{index:06d}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The standard run, its space, and trainer checkpoints for the three Pareto trials (two for trial 3)."""
    run = make_run(tmp_path_factory.mktemp("export") / "run")
    shutil.copy(SPACE, run / "space.yaml")
    dataset = load_dataset("digits")
    for number, name in ((0, "WRN-10-1-B(3,3)"), (1, "WRN-16-1-B(3,3)"), (3, "WRN-16-2-B(3,3)")):
        trainer = Trainer(WRNSpec.parse(name), dataset, CONFIG)
        # The newest epoch sits in the lower-numbered folder, as after a resume from a lagging snapshot.
        for index, epoch in ((1, 0), (0, 1)):
            with torch.no_grad():  # each checkpoint differs, so picking the wrong one shows
                for parameter in trainer.model.parameters():
                    parameter.add_(0.01)
            trainer.epoch = epoch
            trainer.save_checkpoint(checkpoint_folder(run, number, index) / CHECKPOINT_FILE)
            write_epoch(checkpoint_folder(run, number, index), epoch)
    checkpoint_folder(run, 13, 9).mkdir(parents=True)  # another trial's folder, no weights
    return run


def checkpoint_logits(run: Path, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return trial_checkpoint_model(str(run / "tune"), 3).module(images)


def test_the_newest_epoch_of_the_right_trial_is_exported(run):
    model = trial_checkpoint_model(str(run / "tune"), 3)
    assert model.spec == WRNSpec.parse("WRN-16-2") and model.source.endswith("checkpoint.pt (epoch 1)")
    assert "/00003-" in model.source and "checkpoint_000000" in model.source
    with pytest.raises(FileNotFoundError, match="trial 13"):
        trial_checkpoint_model(str(run / "tune"), 13)  # its folder holds no weights
    with pytest.raises(FileNotFoundError, match="trial 2 "):
        trial_checkpoint_model(str(run / "tune"), 2)


def test_state_dict_export_with_spec_and_card(run, tmp_path, capsys):
    assert main(["export", str(run), "--trial", "7a1b2_00003", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "trial-3"
    assert "WRN-16-2-B(3,3)" in capsys.readouterr().out
    spec = WRNSpec.from_dict(json.loads((folder / "spec.json").read_text()))
    assert spec == WRNSpec.parse("WRN-16-2")
    card = json.loads((folder / "model_card.json").read_text())
    assert (card["name"], card["params"], card["val_error"], card["epochs"]) == ("WRN-16-2-B(3,3)", 691386, 0.12, 3)
    assert card["macs"] == spec.macs(8, 10, 1) and "checkpoint_000000/checkpoint.pt (epoch 1)" in card["weights"]
    assert card["dataset"]["mean"] == [0.3063] and card["dataset"]["std"] == [0.3756]
    assert "| parameters | 691,386 |" in (folder / "model_card.md").read_text()
    model = build_model(spec, 10, 1).eval()
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    images = example_input("digits", batch=5)
    with torch.no_grad():
        assert torch.equal(model(images), checkpoint_logits(run, images))


def test_model_card_escapes_what_the_run_supplies(tmp_path):
    """A run name (or trial id, or path) is text in the card: it cannot open HTML, code or a table cell."""
    hostile = "x`<img src=x onerror=alert(1)>`|![p](http://e.x/a.png)*_[#]\\\n# heading &amp;"
    run = make_run(tmp_path / "run", trials=STANDARD_TRIALS[:1])
    tune = tmp_path / hostile / "tune"
    manifest = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**manifest, "name": hostile, "tune_path": str(tune)}))
    trainer = Trainer(WRNSpec.parse("WRN-10-1"), load_dataset("digits"), CONFIG)
    folder = tune / "00000-WRN-10-1-7a1b2_00000" / "checkpoint_000000"
    trainer.save_checkpoint(folder / CHECKPOINT_FILE)
    write_epoch(folder, 0)
    assert main(["export", str(run), "--trial", "0", "--out", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "trial-0" / "model_card.md").read_text()
    assert json.loads((tmp_path / "out" / "trial-0" / "model_card.json").read_text())["run"] == hostile
    assert "<" not in card and ">" not in card, card
    escaped = "x\\`&lt;img src=x onerror=alert(1)&gt;\\`\\|\\!\\[p\\](http://e.x/a.png)\\*\\_\\[\\#\\]\\\\ \\# heading &amp;amp;"
    assert f"run {escaped} (trial 0, 7a1b2\\_00000)" in card, card
    lines = card.splitlines()
    weights = next(line for line in lines if line.startswith("| weights | "))
    assert "/x\\`&lt;img src=x onerror=alert(1)&gt;\\`\\|" in weights and "\\ \\# heading &amp;amp;/tune/" in weights
    assert [line for line in lines if line.startswith("#")] == [lines[0]]  # no heading smuggled in
    assert all(line.count("|") - line.count("\\|") == 3 for line in lines if line.startswith("| "))


def test_exported_program_gives_the_checkpoint_logits(run, tmp_path):
    assert main(["export", str(run), "--trial", "3", "--out", str(tmp_path), "--format", "exported_program"]) == 0
    program = torch.export.load(str(tmp_path / "trial-3" / "model.pt2"))
    images = example_input("digits", batch=5)  # another batch size than the one exported
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), checkpoint_logits(run, images), rtol=1e-5, atol=1e-5)


def test_torchscript_gives_the_checkpoint_logits(run, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", str(run), "--trial", "3", "--out", str(tmp_path), "--format", "torchscript"]) == 0
    assert not [str(warning.message) for warning in caught if "deprecated" in str(warning.message)]
    scripted = torch.jit.load(str(tmp_path / "trial-3" / "model.torchscript.pt"))
    images = example_input("digits", batch=5)  # another batch size than the one traced
    with torch.no_grad():
        torch.testing.assert_close(scripted(images), checkpoint_logits(run, images), rtol=1e-5, atol=1e-5)


def test_onnx_gives_the_checkpoint_logits(run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install onnx onnxscript)")
    assert main(["export", str(run), "--trial", "3", "--out", str(tmp_path), "--format", "onnx"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "trial-3" / "model.onnx"), providers=["CPUExecutionProvider"])
    images = example_input("digits", batch=5)
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, checkpoint_logits(run, images).numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_without_its_packages_is_one_line(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(run), "--trial", "3", "--out", str(tmp_path), "--format", "onnx"]) == 2
    assert "pip install onnx onnxscript" in capsys.readouterr().err


def test_pareto_exports_every_front_trial(run, tmp_path):
    assert main(["export", str(run), "--pareto", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial-0", "trial-1", "trial-3"]


def test_json_is_one_object_of_the_exported_folders_and_their_cards(run, tmp_path, capsys):
    assert main(["export", str(run), "--pareto", "--out", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == str(run.resolve())
    assert [item["folder"] for item in printed["exported"]] == [str(tmp_path / f"trial-{n}") for n in (0, 1, 3)]
    for item in printed["exported"]:
        card = json.loads((Path(item["folder"]) / "model_card.json").read_text())
        assert {key: value for key, value in item.items() if key != "folder"} == card


def test_bad_requests_are_exit_2(run, tmp_path, capsys):
    assert main(["export", str(run), "--trial", "nope", "--out", str(tmp_path)]) == 2
    assert "no trial 'nope'" in capsys.readouterr().err
    assert main(["export", str(run), "--trial", "4", "--out", str(tmp_path)]) == 2  # never checkpointed
    assert "no checkpoint.pt for trial 4 under" in capsys.readouterr().err
    assert main(["export", str(run), "--trial", "3", "--out", str(tmp_path), "--format", "pickle"]) == 2
    assert "--format: 'pickle' is not one of state_dict, exported_program, torchscript, onnx" in capsys.readouterr().err


def test_retrain_reports_test_error(run, tmp_path, capsys):
    assert main(["export", str(run), "--trial", "0", "--out", str(tmp_path), "--retrain", "1"]) == 0
    card = json.loads((tmp_path / "trial-0" / "model_card.json").read_text())
    assert 0.0 <= card["test_error"] < 0.5 and card["weights"] == "retrained 1 epochs on train+val"
    printed = capsys.readouterr()
    assert f"test error {card['test_error']:.4f}" in printed.out
    assert "WRN-10-1-B(3,3): 100%" in printed.err and "1/1" in printed.err  # the epoch bar, as in wrn-search train


def test_model_card_names_the_searched_hyperparameters(run):
    """Two trials of one net differ by their searched hyperparameters: the card says which it is."""
    from wrn_search.runs.export import Model, card_markdown, model_card
    from wrn_search.runs.layout import RunManifest
    from wrn_search.runs.results import load_run

    row = load_run(run).iloc[0].copy()
    row["lr"], row["batch_size"] = 0.05, 64
    spec = WRNSpec.parse(row["name"])
    card = model_card(row, Model(spec, build_model(spec), "weights.pt"), RunManifest.load(run), "state_dict")
    assert card["hyperparameters"] == {"lr": 0.05, "batch_size": 64}
    assert "| searched hyperparameters | lr=0.05 batch_size=64 |" in card_markdown(card)
    del row["lr"], row["batch_size"]
    card = model_card(row, Model(spec, build_model(spec), "weights.pt"), RunManifest.load(run), "state_dict")
    assert card["hyperparameters"] == {} and "searched hyperparameters" not in card_markdown(card)


def test_retrain_takes_the_best_device_and_leaves_ray_alone(run, tmp_path, monkeypatch):
    """export --retrain has the machine to itself: device "auto" (a GPU where there is one); it loads the
    dataset and builds its recipe without importing the Ray side."""
    import wrn_search.training.engine

    seen = {}

    def record(self, spec, dataset, config):
        seen["device"] = config.device
        raise ValueError("recorded")

    monkeypatch.setattr(wrn_search.training.engine.Trainer, "__init__", record)
    for module in ("wrn_search.search.orchestrate", "wrn_search.search.trainable"):  # the Ray side
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["export", str(run), "--trial", "0", "--out", str(tmp_path), "--retrain", "1"]) == 2
    assert seen == {"device": "auto"}
    assert "wrn_search.search.orchestrate" not in sys.modules and "wrn_search.search.trainable" not in sys.modules


def test_export_is_part_of_the_package_api(run, tmp_path):
    import wrn_search

    assert wrn_search.export_trials(run, trial="3", out=tmp_path) == [tmp_path / "trial-3"]


@pytest.mark.parametrize("damage", [b"", b"\x80\x04garbage", b"PK\x03\x04 truncated zip"])
def test_a_damaged_checkpoint_gives_way_to_the_one_before_or_one_line(tmp_path, capsys, damage):
    """A damaged checkpoint.pt ended export in an unpickling traceback."""
    run = make_run(tmp_path / "run", trials=STANDARD_TRIALS[:1])
    shutil.copy(SPACE, run / "space.yaml")
    trainer = Trainer(WRNSpec.parse("WRN-10-1-B(3,3)"), load_dataset("digits"), CONFIG)
    for index in (0, 1):
        trainer.epoch = index + 1
        trainer.save_checkpoint(checkpoint_folder(run, 0, index) / CHECKPOINT_FILE)
        write_epoch(checkpoint_folder(run, 0, index), index + 1)
    newest = checkpoint_folder(run, 0, 1) / CHECKPOINT_FILE
    newest.write_bytes(damage)
    assert trial_checkpoint_model(str(run / "tune"), 0).source.endswith("checkpoint_000000/checkpoint.pt (epoch 1)")
    (checkpoint_folder(run, 0, 0) / CHECKPOINT_FILE).write_bytes(damage)
    assert main(["export", str(run), "--trial", "0", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"wrn-search export: error: checkpoint: {newest} is damaged (") and error.endswith(
        "; no older checkpoint of trial 0 loads either\n") and error.count("\n") == 1, error
    assert not (tmp_path / "out").exists()
