"""The Ray Tune function trainable: one trial = one WRN trained by the training engine.

It reports once per epoch through ``ray.tune.report`` (``ray.train.report`` fails
inside Tune functions in Ray 2.60) with a checkpoint, so a retried or resumed
trial continues at its next epoch. The dataset arrives once through Ray's object
store (``tune.with_parameters``) as read-only uint8 numpy arrays. Running out of memory
anywhere in a trial is its outcome, and a trial leaves its GPU memory to the next one
(Ray reuses the process) and to the trials sharing its GPU.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import ray
from ray import tune

from wrn_search.network.spec import WRNSpec
from wrn_search.records import Outcome
from wrn_search.runs.checkpoints import TrialCheckpoints, write_epoch
from wrn_search.search.resources import CUDA_CONTEXT_BYTES, MARGIN_BYTES, memory_fraction, trial_resources
from wrn_search.search.warmstart import continued_checkpoints
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.checkpoint_format import CHECKPOINT_FILE, CheckpointError
from wrn_search.training.data import Dataset
from wrn_search.training.device import OutOfMemory, free_device_memory
from wrn_search.training.engine import TrainConfig, Trainer
from wrn_search.training.recipe import CONTINUES

logger = logging.getLogger(__name__)


def trial_train_config(config: dict, training: TrainConfig, gpus: float = 0) -> TrainConfig:
    """The space's recipe with the trial's searched hyperparameters on top (:meth:`TrainConfig.for_trial`).

    A trial granted no GPU trains on the CPU even where CUDA is visible (Ray 2.60 leaves
    ``CUDA_VISIBLE_DEVICES`` alone for zero-GPU tasks); a space may not name a CUDA device
    for trials without one (:func:`wrn_search.search.resources.check_trial_device`).
    """
    recipe = training.for_trial(config)
    return replace(recipe, device="cpu") if not gpus and recipe.device == "auto" else recipe


def _trial_gpus() -> float:
    return tune.get_context().get_trial_resources().required_resources.get("GPU", 0)


def limit_gpu_memory(gpus: float) -> None:
    """Cap PyTorch's allocator at this trial's share of its GPU, less the CUDA context outside the cap.

    Fractional-GPU trials share a device with no isolation: a trial capped at its whole share
    would, with its context on top, take memory a neighbour was promised, and the neighbour
    would be the one to run out. A share with no room beside a context is out of memory.
    """
    import torch

    if not (torch.cuda.is_available() and 0 < gpus < 1):
        return
    total = torch.cuda.get_device_properties(0).total_memory  # Ray shows a trial its own GPU only
    fraction = memory_fraction(gpus, total)
    if not fraction:
        raise OutOfMemory(f"out of memory: {gpus:g} of a {total / 2**30:.1f} GiB GPU leaves no room beside a CUDA "
                          f"context and margin ({(CUDA_CONTEXT_BYTES + MARGIN_BYTES) / 2**30:.2f} GiB)")
    torch.cuda.set_per_process_memory_fraction(fraction)


def restore(trainer: Trainer, checkpoints: TrialCheckpoints | None, continued: TrialCheckpoints | None = None) -> None:
    """Load the newest checkpoint that loads: the study trial's own on storage first, else Tune's, else (a trial
    that continues one stopped early) the stopped trial's.

    Tune's snapshot can name an older checkpoint than the trial has (or none at all);
    a checkpoint a kill tore is skipped for the next newest.
    """
    if _load_newest(trainer, checkpoints):
        return
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
        return
    if continued is not None and not _load_newest(trainer, continued):
        logger.warning("trial %d was stopped early but left no checkpoint that loads: training from epoch 1",
                       continued.number)


def _load_newest(trainer: Trainer, checkpoints: TrialCheckpoints | None) -> bool:
    """Load the newest of ``checkpoints`` that loads; whether one did."""
    for stored in checkpoints.newest_first() if checkpoints is not None else ():
        try:
            with checkpoints.local(stored) as path:
                trainer.load_checkpoint(path)
            return True
        except (CheckpointError, OSError) as error:
            logger.warning("skipping checkpoint %s: %s", stored.path, error)
    return False


def train_trial(config: dict, dataset: Dataset, training: TrainConfig, experiment_path: str | None = None) -> None:
    """Train the trial config's net on ``dataset`` with the space's recipe ``training``, continuing from the
    trial's newest checkpoint.

    ``experiment_path`` is Tune's experiment directory, where the trial finds and prunes its
    checkpoints (:mod:`wrn_search.runs.checkpoints`); without it only Tune's checkpoint is used.
    """
    try:
        _train_trial(config, dataset, training, experiment_path)
    finally:  # once _train_trial returns, its trainer is garbage
        free_device_memory()


def _train_trial(config: dict, dataset: Dataset, training: TrainConfig, experiment_path: str | None) -> None:
    gpus = _trial_gpus()
    node_id = ray.get_runtime_context().get_node_id()
    checkpoints = continued = None
    if experiment_path is not None and config.get("number") is not None:
        checkpoints = TrialCheckpoints(experiment_path, config["number"])
    if experiment_path is not None and config.get(CONTINUES) is not None:
        continued = continued_checkpoints(config, experiment_path)  # this run's, or an earlier run's
    try:
        limit_gpu_memory(gpus)
        trainer = Trainer(WRNSpec.from_columns(config), dataset, trial_train_config(config, training, gpus))
        restore(trainer, checkpoints, continued)
    except OutOfMemory as error:  # the net or its checkpoint does not fit this node: an outcome, not a crash to retry
        logger.warning("%s", error)
        tune.report({"epoch": 1, "val_error": 1.0, "outcome": Outcome.OUT_OF_MEMORY, "params": config.get("params"),
                     "macs": config.get("macs"), "node_id": node_id})
        return
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


def build_trainable(space: SearchSpace, dataset: Dataset, experiment_path: str | None = None):
    """The trainable with the dataset in Ray's object store; ``experiment_path`` lets trials find their checkpoints."""
    trainable = tune.with_parameters(train_trial, dataset=dataset, training=space.training,
                                     experiment_path=experiment_path)
    return tune.with_resources(trainable, trial_resources(space, dataset))


def load_space_dataset(space: SearchSpace) -> Dataset:
    """The space's dataset, split with the search's seed (SVHN's extra split included when asked)."""
    return space.dataset.load(space.search.seed)
