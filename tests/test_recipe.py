"""The one recipe: every TrainConfig field from a space's YAML and from ``wrn-search train`` flags to the trainer."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch
from search_helpers import write_space

from wrn_search.cli import build_parser, main
from wrn_search.cli.train import recipe_from
from wrn_search.network.model import build_model
from wrn_search.network.spec import WRNSpec
from wrn_search.search.trainable import trial_train_config
from wrn_search.spaces.space import load_space, parse_space
from wrn_search.training.data import load_dataset
from wrn_search.training.engine import Trainer, lr_factor
from wrn_search.training.recipe import TrainConfig

#: A value other than the default for every field, as YAML/Python values and as the command line writes it.
CHANGED = {
    "epochs": (7, "7"), "batch_size": (32, "32"), "lr": (0.01, "0.01"), "momentum": (0.5, "0.5"),
    "nesterov": (False, None), "weight_decay": (1e-4, "1e-4"), "schedule": ("cosine", "cosine"),
    "milestones": ((0.5, 0.75), "0.5,0.75"), "gamma": (0.1, "0.1"), "label_smoothing": (0.1, "0.1"),
    "augment": ("none", "none"), "init": ("official", "official"), "precision": ("fp32", "fp32"),
    "channels_last": (False, None), "compile": (True, None), "device": ("cpu", "cpu"), "seed": (3, "3"),
    "num_threads": (1, "1"),
}
FLAGS = {"nesterov": "--no-nesterov", "channels_last": "--no-channels-last", "compile": "--compile",
         "num_threads": "--threads"}


def test_every_field_is_covered_here():
    assert set(CHANGED) == {spec.name for spec in fields(TrainConfig)}
    assert all(CHANGED[spec.name][0] != spec.default for spec in fields(TrainConfig))


def test_every_field_round_trips_from_the_command_line():
    argv = ["train", "WRN-10-1"]
    for name, (_, text) in CHANGED.items():
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        argv += [flag] if text is None else [flag, text]
    config = recipe_from(build_parser().parse_args(argv))
    assert {name: getattr(config, name) for name in CHANGED} == {name: value for name, (value, _) in CHANGED.items()}


def test_wrn_search_train_hands_every_field_to_the_trainer(tmp_path, monkeypatch):
    import wrn_search.training.engine

    seen = {}

    def record(self, spec, dataset, config):
        seen["config"] = config
        raise ValueError("recorded")

    monkeypatch.setattr(wrn_search.training.engine.Trainer, "__init__", record)
    argv = ["train", "WRN-10-1", "--out", str(tmp_path / "out")]
    for name, (_, text) in CHANGED.items():
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        argv += [flag] if text is None else [flag, text]
    assert main(argv) == 2
    assert {name: getattr(seen["config"], name) for name in CHANGED} == {name: value for name, (value, _) in
                                                                         CHANGED.items()}


def test_every_field_round_trips_from_a_space(tmp_path):
    training = {name: list(value) if isinstance(value, tuple) else value for name, (value, _) in CHANGED.items()}
    space = load_space(str(write_space(tmp_path, training=training)))
    space.to_yaml(tmp_path / "again.yaml")  # as a run directory keeps it, and resume and export read it
    again = load_space(str(tmp_path / "again.yaml"))
    assert again.training == space.training
    config = trial_train_config(again.config(WRNSpec.parse("WRN-10-1"), {}), again.training)
    assert {name: getattr(config, name) for name in CHANGED} == {name: value for name, (value, _) in CHANGED.items()}


def test_a_trial_trains_with_the_recipe_and_its_searched_values(tmp_path):
    space = load_space(str(write_space(tmp_path, dimensions={"depth": [10], "widen_factor": [1], "lr": [0.05]},
                                       training={"epochs": 4, "gamma": 0.1, "device": "cpu"})))
    config = space.config(WRNSpec.parse("WRN-10-1"), {"lr": 0.05})
    recipe = trial_train_config(config, space.training)
    assert (recipe.lr, recipe.epochs, recipe.gamma) == (0.05, 4, 0.1)
    trainer = Trainer(WRNSpec.from_columns(config), load_dataset("digits"), recipe)
    assert trainer.optimizer.param_groups[0]["initial_lr"] == 0.05 and trainer.config == recipe


def test_the_trainer_uses_momentum_nesterov_milestones_gamma_and_init():
    config = TrainConfig(epochs=8, momentum=0.5, nesterov=False, milestones=(0.5, 0.75), gamma=0.1,
                         init="official", device="cpu", batch_size=64)
    trainer = Trainer(WRNSpec.parse("WRN-10-1"), load_dataset("digits"), config)
    group = trainer.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.5, False)
    assert [lr_factor(config)(epoch) for epoch in (3, 4, 5, 6)] == pytest.approx([1, 0.1, 0.1, 0.01])
    bn_weights = torch.cat([m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert 0 <= bn_weights.min() < 0.5 < bn_weights.max() <= 1  # U(0, 1), not torchvision's ones


def test_official_init_is_he_fan_in():
    torch.manual_seed(0)
    conv = build_model("WRN-16-4", init="official").groups[1][0].conv1  # 64 -> 128 channels, 3x3
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    torch.manual_seed(0)
    conv = build_model("WRN-16-4").groups[1][0].conv1
    assert conv.weight.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.05)
    with pytest.raises(ValueError, match="init: must be one of torchvision, official"):
        build_model("WRN-16-4", init="xavier")


def test_paper_svhn_shows_the_papers_svhn_recipe(capsys):
    assert main(["space", "paper-svhn", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    training = summary["training"]
    assert (training["lr"], training["epochs"], training["milestones"], training["gamma"]) == (0.01, 160, [0.5, 0.75], 0.1)
    assert training["augment"] == "none" and training["nesterov"] is True
    assert summary["dataset"]["extra"] is True
    assert summary["architectures"] == ["WRN-16-4-B(3,3)", "WRN-16-8-B(3,3)", "WRN-52-1-B(3,3)"]
    assert summary["dimensions"] == {"dropout": [0.4]}
    epochs = [e for e in range(160) if lr_factor(load_space("paper-svhn").training)(e) < 1]
    assert epochs[0] == 80  # x0.1 at epoch 80, and again at 120


def test_extra_is_svhns_alone(capsys):
    with pytest.raises(ValueError, match="dataset.extra: only svhn has an extra split"):
        parse_space({"dimensions": {"depth": [10], "widen_factor": [1]}, "dataset": {"name": "digits", "extra": True}})
    assert main(["train", "WRN-10-1", "--extra", "--epochs", "1"]) == 2
    assert "extra: not an option of dataset 'digits'" in capsys.readouterr().err


def test_dropout_on_a_one_conv_block_is_refused():
    with pytest.raises(ValueError, match=r"dropout: B\(3\) has one conv per block"):
        WRNSpec.parse("WRN-40-2-B(3)-d0.3")
    assert WRNSpec.parse("WRN-22-2-B(3)").dropout == 0
    document = {"dimensions": {"depth": [10, 16], "widen_factor": [1], "block_types": ["B(3)", "B(3,3)"],
                               "dropout": [0.0, 0.3]}, "dataset": {"name": "digits"}}
    with pytest.raises(ValueError, match=r"dimensions.dropout: B\(3\) has one conv per block"):
        parse_space(document)
    document["dimensions"]["dropout"] = [0.0]
    assert parse_space(document).feasible_count == 4  # WRN-10 and WRN-16 of each block type


@pytest.mark.parametrize("field, value, allowed", [("epochs", 10**12, "from 1 to 100,000"),
                                                   ("batch_size", 10**9, "from 1 to 1,048,576")])
def test_training_sizes_have_upper_bounds(tmp_path, field, value, allowed):
    with pytest.raises(ValueError, match=f"training.{field}: must be an integer {allowed}, got"):
        load_space(str(write_space(tmp_path, training={field: value})))
