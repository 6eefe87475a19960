"""Train step: WRN-16-4 on CIFAR-shaped batches, our Trainer vs the plain fp32 NCHW PyTorch loop.

Ours is ``wrn_search.training.engine.Trainer`` with its device defaults (bf16 autocast where
the hardware has it, channels_last, the device-resident loader). The baseline is
the loop from the PyTorch tutorials on the same network module in fp32 NCHW,
fed by the torchvision DataLoader of the loader benchmark, SGD with Nesterov.
Both are reported against a dense matmul measured in the same run. On a GPU an epoch of
1-2 steps and one 2048x2048 matmul per sync time kernel launches and host syncs, not
throughput: there epochs have at least 50 steps and the peak is a large matmul, several
per sync (:func:`timing`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wrn_search.network.model import build_model
from wrn_search.network.spec import WRNSpec
from wrn_search.training.data import Dataset, load_dataset
from wrn_search.training.engine import TrainConfig, Trainer

from .cifar_files import cifar10_files, make_images
from .common import Row, benchmark_device, describe_device, log, median_time, pin_threads, speedup
from .loader import BATCH_SIZE, baseline_loader

SPEC = "WRN-16-4"


@dataclass(frozen=True)
class Timing:
    """What is timed: ``steps`` per epoch, ``repeats`` epochs after one warm-up, and the matmul peak."""

    steps: int
    repeats: int
    matmul_size: int
    #: Matmuls between two syncs: one sync per matmul would add its latency to every one.
    matmul_iterations: int


def timing(device: torch.device, quick: bool) -> Timing:
    """A CPU takes a second per WRN-16-4 step; a big GPU a millisecond, 200+ kernel launches and a sync per epoch."""
    if device.type == "cuda":
        return Timing(steps=50 if quick else 100, repeats=3 if quick else 5, matmul_size=8192, matmul_iterations=20)
    return Timing(steps=1 if quick else 2, repeats=3 if quick else 5, matmul_size=2048, matmul_iterations=1)


def matmul_flops(device: torch.device, dtype: torch.dtype, size: int, iterations: int) -> float:
    """FLOP/s of dense ``size`` x ``size`` matmuls, ``iterations`` per sync, best of 10: the practical peak."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))

    def multiply() -> None:
        for _ in range(iterations):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = min(median_time(multiply, repeats=1, warmup=int(i == 0)) for i in range(10))
    return 2 * size**3 * iterations / best


def ours(data: Dataset, spec: WRNSpec, epochs: int, threads: int) -> tuple[list[float], list[float], Trainer]:
    """Images/s and mean training loss per epoch of ``Trainer.fit`` (the first epoch is the warm-up)."""
    trainer = Trainer(spec, data, TrainConfig(epochs=epochs, batch_size=BATCH_SIZE, num_threads=threads))
    history = trainer.fit().history
    return [m["images_per_s"] for m in history], [m["train_loss"] for m in history], trainer


def baseline(root: str, size: int, spec: WRNSpec, epochs: int, device: torch.device) -> tuple[list[float], list[float]]:
    """The tutorial loop: fp32 NCHW, DataLoader batches copied to the device, SGD Nesterov."""
    model = build_model(spec).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = baseline_loader(root, device, indices=range(size))
    rates, losses = [], []
    model.train()
    for _ in range(epochs):
        start, seen, loss_sum = time.perf_counter(), 0, 0.0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
        rates.append(seen / (time.perf_counter() - start))
        losses.append(loss_sum / seen)
    return rates, losses


def run(quick: bool = False, threads: int | None = None) -> Row:
    threads = pin_threads(threads)
    device = benchmark_device()
    spec = WRNSpec.parse(SPEC)
    plan = timing(device, quick)
    steps, repeats = plan.steps, plan.repeats
    size = steps * BATCH_SIZE
    log(f"train_step: {spec.name}, {steps} steps per epoch, 1 warm-up + {repeats} timed epochs per side")
    with tempfile.TemporaryDirectory() as tmp, cifar10_files(tmp, *make_images(50_000)):
        data = load_dataset("cifar10", root=tmp, val_fraction=0)
        data = Dataset(data.info, data.train.take(np.arange(size)), data.val, data.test)
        our_rates, our_losses, trainer = ours(data, spec, 1 + repeats, threads)
        base_rates, base_losses = baseline(tmp, size, spec, 1 + repeats, device)
    ours_rate, base_rate = statistics.median(our_rates[1:]), statistics.median(base_rates[1:])
    train_flops = 3 * 2 * spec.macs(32, 10, 3)  # forward + backward ~ 3 forwards, 2 FLOPs per MAC
    low = torch.bfloat16 if trainer.precision == "bf16" else torch.float32
    peaks = {name: matmul_flops(device, dtype, plan.matmul_size, plan.matmul_iterations)
             for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    ours_peak = peaks["bf16" if low is torch.bfloat16 else "fp32"]
    details = {
        "threads": threads, "timing": asdict(plan), "precision": trainer.precision,
        "channels_last": trainer.channels_last, "fused_sgd": trainer.optimizer.param_groups[0]["fused"],
        "compile": trainer.config.compile, "train_flops_per_image": train_flops,
        "matmul_flops_per_s": peaks,
        "ours_flops_per_s": ours_rate * train_flops, "baseline_flops_per_s": base_rate * train_flops,
        "ours_fraction_of_matmul": ours_rate * train_flops / ours_peak,
        "baseline_fraction_of_fp32_matmul": base_rate * train_flops / peaks["fp32"],
        "ours_epoch_losses": our_losses, "baseline_epoch_losses": base_losses,
    }
    checks = {"ours_loss_falls": our_losses[-1] < our_losses[0],
              "baseline_loss_falls": base_losses[-1] < base_losses[0]}
    workload = (f"{spec.name} ({spec.num_params():,} params, {spec.macs() / 1e6:.0f}M MACs/image), batch {BATCH_SIZE}, "
                f"32x32, epochs of {steps} step(s) on a CIFAR-format slice, median of {repeats} epochs after 1 "
                f"warm-up; peak: {plan.matmul_size}^2 matmuls, {plan.matmul_iterations} per sync; "
                f"ours: {trainer.precision}, channels_last={trainer.channels_last}, "
                f"compile={trainer.config.compile}; baseline: fp32 NCHW + DataLoader; "
                f"{ours_rate * train_flops / 1e9:.0f} vs {base_rate * train_flops / 1e9:.0f} GFLOP/s = "
                f"{details['ours_fraction_of_matmul']:.0%} of {'bf16' if low is torch.bfloat16 else 'fp32'} matmul vs "
                f"{details['baseline_fraction_of_fp32_matmul']:.0%} of fp32 matmul")
    return Row("train_step", ours_rate, base_rate, "images/s", speedup(ours_rate, base_rate, True),
               describe_device(device, threads), workload, checks, details)
