"""The Ray Tune function trainable: one trial = one WRN trained by the training engine.

It reports once per epoch through ``ray.tune.report`` (``ray.train.report`` fails
inside Tune functions in Ray 2.60) with a checkpoint, so a retried or resumed
trial continues at its next epoch. The dataset arrives once through Ray's object
store (``tune.with_parameters``) as read-only uint8 numpy arrays.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import ray
from ray import tune

from .checkpoints import TrialCheckpoints, write_epoch
from .data import Dataset
from .spec import WRNSpec
from .train import CHECKPOINT_FILE, CheckpointError, OutOfMemory, Trainer, TrainConfig

logger = logging.getLogger(__name__)

#: Training settings that a trial config may carry: searched hyperparameters, and a benchmark table's seed.
TRAINING_KEYS = ("lr", "weight_decay", "batch_size", "seed")


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


def restore(trainer: Trainer, checkpoints: TrialCheckpoints | None) -> None:
    """Load the newest checkpoint that loads: the study trial's own on storage first, else Tune's.

    Tune's snapshot can name an older checkpoint than the trial has (or none at all);
    a checkpoint a kill tore is skipped for the next newest.
    """
    for stored in checkpoints.newest_first() if checkpoints is not None else ():
        try:
            with checkpoints.local(stored) as path:
                trainer.load_checkpoint(path)
            return
        except (CheckpointError, OSError) as error:
            logger.warning("skipping checkpoint %s: %s", stored.path, error)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_checkpoint(Path(directory) / CHECKPOINT_FILE)


def train_trial(config: dict, dataset: Dataset, training: dict, experiment_path: str | None = None) -> None:
    """Train ``config["name"]`` on ``dataset``, continuing from the trial's newest checkpoint.

    ``experiment_path`` is Tune's experiment directory, where the trial finds and prunes its
    checkpoints (:mod:`wrn_search.checkpoints`); without it only Tune's checkpoint is used.
    """
    gpus = _trial_gpus()
    _limit_gpu_memory(gpus)
    node_id = ray.get_runtime_context().get_node_id()
    try:
        trainer = Trainer(WRNSpec.parse(config["name"]), dataset, trial_train_config(config, training, gpus))
    except OutOfMemory as error:  # the net does not fit this node: an outcome the study records, not a crash
        logger.warning("%s", error)
        tune.report({"epoch": 1, "val_error": 1.0, "outcome": "out_of_memory", "params": config.get("params"),
                     "macs": config.get("macs"), "node_id": node_id})
        return
    checkpoints = None
    if experiment_path is not None and config.get("number") is not None:
        checkpoints = TrialCheckpoints(experiment_path, config["number"])
    restore(trainer, checkpoints)
    trial_id = tune.get_context().get_trial_id()

    def report(metrics: dict) -> None:
        metrics = {**metrics, "node_id": node_id}
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(Path(directory) / CHECKPOINT_FILE)
            write_epoch(directory, metrics["epoch"])
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        if checkpoints is not None:
            checkpoints.prune(checkpoints.trial_dir(config, trial_id))

    if trainer.epoch >= trainer.config.epochs:
        # Finished before a driver kill but not yet recorded by Tune: report the last epoch again.
        tune.report({**trainer.history[-1], "node_id": node_id})
        return
    trainer.fit(callback=report)
