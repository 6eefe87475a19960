"""The Ray Tune function trainable: one trial = one WRN trained by the training engine.

It reports once per epoch through ``ray.tune.report`` (``ray.train.report`` fails
inside Tune functions in Ray 2.60) with a checkpoint, so a retried or resumed
trial continues at its next epoch. The dataset arrives once through Ray's object
store (``tune.with_parameters``) as read-only uint8 numpy arrays.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ray
from ray import tune

from .data import Dataset
from .spec import WRNSpec
from .train import CHECKPOINT_FILE, Trainer, TrainConfig

#: Training settings that a trial config may carry: searched hyperparameters, and a benchmark table's seed.
TRAINING_KEYS = ("lr", "weight_decay", "batch_size", "seed")
#: Test hook: a path; the first trial to finish epoch 2 writes its number there and kills its own process.
CRASH_ONCE_ENV = "WRN_SEARCH_CRASH_ONCE"


def trial_train_config(config: dict, training: dict, gpus: float = 0) -> TrainConfig:
    """The space's training section with the trial's searched hyperparameters on top.

    A trial granted no GPU trains on the CPU even where CUDA is visible (Ray 2.60 leaves
    ``CUDA_VISIBLE_DEVICES`` alone for zero-GPU tasks), unless the space names a device.
    """
    values = {**training, **{key: config[key] for key in TRAINING_KEYS if key in config}}
    if not gpus and values.get("device", "auto") == "auto":
        values["device"] = "cpu"
    return TrainConfig(**values)


def _trial_gpus() -> float:
    return tune.get_context().get_trial_resources().required_resources.get("GPU", 0)


def _limit_gpu_memory(gpus: float) -> None:
    """Fractional-GPU trials share a device with no isolation: cap this process at its share."""
    import torch

    if torch.cuda.is_available() and 0 < gpus < 1:
        torch.cuda.set_per_process_memory_fraction(gpus)


def _crash_once_for_tests(number: int, epoch: int) -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and epoch == 2 and not os.path.exists(marker):
        Path(marker).write_text(f"{number}\n")
        os._exit(17)


def train_trial(config: dict, dataset: Dataset, training: dict) -> None:
    """Train ``config["name"]`` on ``dataset``; resume from Tune's checkpoint if there is one."""
    gpus = _trial_gpus()
    _limit_gpu_memory(gpus)
    trainer = Trainer(WRNSpec.parse(config["name"]), dataset, trial_train_config(config, training, gpus))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_checkpoint(Path(directory) / CHECKPOINT_FILE)

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict) -> None:
        _crash_once_for_tests(config.get("number", -1), metrics["epoch"])
        metrics = {**metrics, "node_id": node_id}
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(Path(directory) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    if trainer.epoch >= trainer.config.epochs:
        # Finished before a driver kill but not yet recorded by Tune: report the last epoch again.
        tune.report({**trainer.history[-1], "node_id": node_id})
        return
    trainer.fit(callback=report)
