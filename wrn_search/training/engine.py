"""Train one WRN with the paper's recipe; the engine under ``wrn-search train`` and every search trial.

SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4, batch 128 and the lr
multiplied by 0.2 at 30%, 60% and 80% of the epochs (60/120/160 of 200), as in
Zagoruyko & Komodakis (2016). Precision and memory layout follow the device:
bf16 autocast where the hardware has it, channels_last everywhere.

Every random draw is seeded by ``(seed, stream, epoch)`` and the global RNGs are
restored after use, so a trial's result does not depend on what ran before it
in the same process (Ray reuses worker processes) and a resumed run repeats the
uninterrupted one exactly. For the same reason a compiled trial starts from an empty
compiler cache, and :func:`free_device_memory` gives a finished trial's GPU memory back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wrn_search.compat import CHECKPOINT_FIELDS_ADDED
from wrn_search.errors import first_line
from wrn_search.network.model import build_model
from wrn_search.network.spec import WRNSpec
from wrn_search.records import Outcome
from wrn_search.training.checkpoint_format import CHECKPOINT_FORMAT, CheckpointError
from wrn_search.training.data import Dataset, Split
from wrn_search.training.device import (
    TRAIN_BYTES_PER_PARAM,
    OutOfMemory,
    compile_for_trial,
    free_device_memory,
    is_out_of_memory,
    out_of_memory_as,
    resolve_device,
    resolve_precision,
)
from wrn_search.training.loader import DeviceLoader, derive_seed
from wrn_search.training.recipe import TrainConfig

#: Check the running loss for NaN/inf every this many steps (each check waits for the device).
DIVERGENCE_CHECK_STEPS = 20



# Independent random streams of one run.
_INIT_STREAM, _LOADER_STREAM, _DROPOUT_STREAM = 1, 2, 3


class _Diverged(Exception):
    pass


@dataclass
class TrainResult:
    """How a ``fit`` ended: ``outcome`` is one of :data:`~wrn_search.records.TRAINING_OUTCOMES`."""

    outcome: Outcome
    epochs: int
    val_error: float | None
    reason: str | None = None
    metrics: dict | None = None
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Trains ``spec`` on ``dataset.train`` and evaluates on ``dataset.val`` after every epoch.

    The data stays on the device for the trainer's lifetime; build one trainer
    per trial and let it go afterwards.
    """

    def __init__(self, spec: WRNSpec, dataset: Dataset, config: TrainConfig = TrainConfig()):
        """Build the model, optimizer and loaders; a net that does not fit in memory raises :class:`OutOfMemory`."""
        self.spec, self.dataset, self.config = spec, dataset, config
        info = dataset.info
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.channels_last = True if config.channels_last is None else config.channels_last
        self.augment = config.augment or info.augment
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
        self.params = spec.num_params(info.num_classes, info.in_channels)
        self.macs = spec.macs(info.input_size, info.num_classes, info.in_channels)
        self.epoch = 0
        self.history: list[dict] = []
        self._eval_loaders: dict[str, DeviceLoader] = {}
        shortfall = self._shortfall()
        if shortfall is not None:
            raise OutOfMemory(shortfall)
        with out_of_memory_as(f"building {spec.name} on {self.device}"):
            with torch.random.fork_rng(devices=[]):  # initialise from the run's seed, leave the global RNG alone
                torch.manual_seed(derive_seed(config.seed, _INIT_STREAM))
                model = build_model(spec, info.num_classes, info.in_channels, config.init)
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            self.model = model.to(self.device, memory_format=memory_format)
            # Inductor's workers: at most the threads torch may use, in a Ray trial its CPUs (OMP_NUM_THREADS).
            self._forward: nn.Module = (compile_for_trial(self.model, config.num_threads or torch.get_num_threads())
                                        if config.compile else self.model)
            # fused: one kernel for the whole update; a small net's step on a big GPU is launch-bound.
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                             nesterov=config.nesterov, weight_decay=config.weight_decay,
                                             fused=self.device.type == "cuda")
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config))
            self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
            self.train_loader = self._loader(dataset.train, config.batch_size, self.augment, shuffle=True)

    def _shortfall(self) -> str | None:
        """Why the net can never train here, known before anything is allocated, or None.

        The model is built in host memory and trains with a weight, a gradient and a momentum per
        parameter on its device. A net over these lower bounds would otherwise allocate layer after
        layer until the allocator fails or, as Linux overcommits, the kernel kills the process.
        """
        training_bytes = self.params * TRAIN_BYTES_PER_PARAM
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limits = [("host memory", host, training_bytes if self.device.type == "cpu" else 4 * self.params)]
        if self.device.type == "cuda":
            limits.append((f"{self.device} memory", torch.cuda.get_device_properties(self.device).total_memory,
                           training_bytes))
        for where, total, needed in limits:
            if needed > total:
                return (f"out of memory for {self.spec.name}: its {self.params:,} params alone need "
                        f"{needed // 2**30:,} GiB, more than the {total // 2**30:,} GiB of {where}")
        return None

    # -- training -------------------------------------------------------------

    def fit(self, callback: Callable[[dict], None] | None = None) -> TrainResult:
        """Train from the current epoch to ``config.epochs``, calling ``callback(metrics)`` after each.

        A non-finite loss ends the run as "diverged", running out of device or host
        memory (:func:`is_out_of_memory`) as "out_of_memory"; either way the callback
        gets one last metrics dict with ``val_error`` 1.0. Exceptions from the callback
        propagate.
        """
        while self.epoch < self.config.epochs:
            outcome = reason = None
            start = time.perf_counter()
            try:
                metrics = self._run_epoch()
            except _Diverged as error:
                outcome, reason = Outcome.DIVERGED, str(error)
            except (RuntimeError, MemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                outcome = Outcome.OUT_OF_MEMORY
                reason = (f"out of memory training {self.spec.name} with batch size {self.config.batch_size} "
                          f"on {self.device}: {first_line(error)}")
            if outcome is not None:  # outside the except block: the failed epoch's tensors are gone
                self.optimizer.zero_grad(set_to_none=True)
                free_device_memory()
                metrics = self._failure_metrics(outcome, time.perf_counter() - start)
            self.history.append(metrics)
            if callback is not None:
                callback(metrics)
            if outcome is not None:
                return TrainResult(outcome, self.epoch, 1.0, reason, metrics, list(self.history))
        last = self.history[-1] if self.history else None
        return TrainResult(Outcome.COMPLETED, self.epoch, last["val_error"] if last else None, None, last,
                           list(self.history))

    def _run_epoch(self) -> dict:
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        with self._seeded(_DROPOUT_STREAM, self.epoch):
            for step, (x, y) in enumerate(self.train_loader, 1):
                with self._autocast():
                    loss = self.criterion(self._forward(x), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach() * len(y)
                if step % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(loss_sum):
                    raise _Diverged(f"non-finite training loss in epoch {self.epoch + 1}, step {step}")
        train_loss = loss_sum.item() / self.train_loader.num_samples  # .item() waits for the device
        train_seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise _Diverged(f"non-finite training loss in epoch {self.epoch + 1}")
        self.scheduler.step()
        val_error = val_loss = None
        if len(self.dataset.val):
            val_error, val_loss = self._evaluate("val")
            if not math.isfinite(val_loss):
                raise _Diverged(f"non-finite validation loss after epoch {self.epoch + 1}")
        self.epoch += 1
        return {
            "epoch": self.epoch, "train_loss": train_loss, "val_error": val_error, "val_loss": val_loss, "lr": lr,
            "images_per_s": self.train_loader.num_samples / train_seconds,
            "epoch_seconds": time.perf_counter() - start, "params": self.params, "macs": self.macs,
            "outcome": Outcome.COMPLETED.value,  # plain: the history is saved with weights_only checkpoints
        }

    def _failure_metrics(self, outcome: Outcome, seconds: float) -> dict:
        return {
            "epoch": self.epoch + 1, "train_loss": None, "val_error": 1.0, "val_loss": None,
            "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": None, "epoch_seconds": seconds,
            "params": self.params, "macs": self.macs, "outcome": outcome.value,
        }

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, split: str | Split) -> tuple[float, float]:
        """(error, mean cross-entropy) on "train", "val", "test" or any :class:`Split`, no augmentation.

        Running out of memory (uploading the split, or in a batch) raises :class:`OutOfMemory`.
        """
        with out_of_memory_as(f"evaluating {self.spec.name} on {self.device}"):
            return self._evaluate(split)

    def _evaluate(self, split: str | Split) -> tuple[float, float]:
        if isinstance(split, str):
            if split not in ("train", "val", "test"):
                raise ValueError(f"split: must be 'train', 'val', 'test' or a Split, got {split!r}")
            if split not in self._eval_loaders:
                self._eval_loaders[split] = self._eval_loader(getattr(self.dataset, split))
            loader = self._eval_loaders[split]
        else:
            loader = self._eval_loader(split)
        self.model.eval()
        errors = torch.zeros((), device=self.device, dtype=torch.int64)
        loss_sum = torch.zeros((), device=self.device)
        with torch.no_grad(), self._autocast():
            for x, y in loader:
                logits = self._forward(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                errors += (logits.argmax(1) != y).sum()
        n = loader.num_samples
        return errors.item() / n, loss_sum.item() / n

    def _eval_loader(self, split: Split) -> DeviceLoader:
        if not len(split):
            raise ValueError("split: cannot evaluate on an empty split")
        return self._loader(split, 2 * self.config.batch_size, "none", shuffle=False)

    def _loader(self, split: Split, batch_size: int, augment: str, shuffle: bool) -> DeviceLoader:
        info = self.dataset.info
        return DeviceLoader(split.images, split.labels, batch_size, info.mean, info.std, augment=augment,
                            shuffle=shuffle, seed=derive_seed(self.config.seed, _LOADER_STREAM),
                            device=self.device, channels_last=self.channels_last)

    # -- checkpoints ----------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write model, optimizer, scheduler, loader state and epoch to ``path`` atomically."""
        state = {
            "format": CHECKPOINT_FORMAT,
            **self._identity(),
            "epoch": self.epoch,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.train_loader.state_dict(),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as file:
                torch.save(state, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint of this spec, dataset split and recipe; anything else is a :class:`CheckpointError`.

        It is read into host memory first, then copied into the trainer's tensors: reading it straight
        onto the GPU would need room for a second copy of the weights. Running out of memory raises
        :class:`OutOfMemory`; the optimizer keeps this device's kernel choice (fused on CUDA).
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint: no file at {path}")
        with out_of_memory_as(f"loading {path} for {self.spec.name} on {self.device}"):
            self._load_checkpoint(path)

    def _load_checkpoint(self, path: str | os.PathLike) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, garbage, or a pickle that weights_only refuses
            if is_out_of_memory(error):
                raise
            raise CheckpointError(f"checkpoint: {path} is corrupt or unreadable ({type(error).__name__}: "
                                  f"{first_line(error)})") from error
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint: {path} is not a {CHECKPOINT_FORMAT} file")
        differences = [
            f"{key}.{name}: checkpoint {state.get(key, {}).get(name)!r}, now {value!r}"
            for key, expected in self._identity().items()
            for name, value in expected.items()
            if not isinstance(state.get(key), dict)
            or state[key].get(name, CHECKPOINT_FIELDS_ADDED.get((key, name))) != value
        ]
        if differences:
            raise CheckpointError(f"checkpoint: {path} belongs to a different run ({'; '.join(differences)})")
        kernels = [{key: group[key] for key in ("foreach", "fused")} for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])  # its groups carry the saving device's kernels
            for group, choice in zip(self.optimizer.param_groups, kernels):
                group.update(choice)
            self.scheduler.load_state_dict(state["scheduler"])
            self.train_loader.load_state_dict(state["loader"])
            epoch, history = int(state["epoch"]), list(state["history"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            if is_out_of_memory(error):
                raise
            raise CheckpointError(f"checkpoint: {path} is incomplete or does not fit the model ({error})") from error
        self.epoch, self.history = epoch, history

    def _identity(self) -> dict:
        """What a checkpoint must agree on: spec, data (down to the split) and recipe, as plain JSON values."""
        info, data = self.dataset.info, self.dataset
        digest = hashlib.blake2b(digest_size=8)
        for split in (data.train, data.val):
            digest.update(np.ascontiguousarray(split.labels).tobytes())
        dataset = {"name": info.name, "num_classes": info.num_classes, "in_channels": info.in_channels,
                   "input_size": list(info.input_size), "train": len(data.train), "val": len(data.val),
                   "labels_digest": digest.hexdigest()}
        return json.loads(json.dumps({"spec": self.spec.to_dict(), "dataset": dataset,
                                      "config": self.config.recipe()}))

    # -- device helpers -------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @contextmanager
    def _seeded(self, *keys: int):
        """Seed the global RNGs (dropout draws from them) for one stream, and restore them afterwards."""
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.config.seed, *keys))
            yield



def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The schedule as a multiplier of ``config.lr`` for each epoch (0-based)."""
    if config.schedule == "cosine":
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    milestones = [int(m * config.epochs + 0.5) for m in config.milestones]
    return lambda epoch: config.gamma ** sum(epoch >= m for m in milestones)


