"""Loader: our device-resident CIFAR augmentation vs torchvision transforms through a DataLoader.

Both read the same 50,000 images from CIFAR-10's pickle files (ours through
``wrn_search.training.data.load_dataset``, the baseline through ``torchvision.datasets.CIFAR10``),
both yield normalised, randomly cropped and flipped batches of 128 on the
training device. The baseline uses as many DataLoader workers as cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image
from scipy.stats import chi2_contingency
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from wrn_search.training.data import CIFAR_MEAN, CIFAR_STD, load_dataset
from wrn_search.training.loader import DeviceLoader

from .cifar_files import cifar10_files, make_images
from .common import Row, benchmark_device, describe_device, log, pin_threads, speedup

BATCH_SIZE = 128
PROBE_IMAGES = 2048


def baseline_transform() -> transforms.Compose:
    """The per-image CIFAR recipe from the torchvision docs and tutorials."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])


def baseline_loader(root: str, device: torch.device, indices: Iterable[int] | None = None) -> DataLoader:
    """CIFAR10 + transforms in ``cpu_count`` persistent workers, pinned memory on CUDA."""
    dataset = datasets.CIFAR10(root, train=True, transform=baseline_transform())
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, list(indices))
    workers = os.cpu_count() or 1
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers,
                      persistent_workers=True, pin_memory=device.type == "cuda")


def our_loader(root: str, device: torch.device, size: int | None = None) -> DeviceLoader:
    """The loader the trainer builds: the whole split on the device, channels_last batches."""
    data = load_dataset("cifar10", root=root, val_fraction=0)
    train = data.train if size is None else data.train.take(np.arange(size))
    return DeviceLoader(train.images, train.labels, BATCH_SIZE, data.info.mean, data.info.std,
                        augment=data.info.augment, device=device, channels_last=True)


def images_per_second(batches: Iterable, device: torch.device, limit: int) -> float:
    """Images/s over the first ``limit`` batches, each moved to ``device`` as a training loop would."""
    count = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches, 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        count += len(y)
        if step == limit:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return count / (time.perf_counter() - start)


def median_rate(make_batches, device: torch.device, limit: int, repeats: int) -> float:
    """Median images/s of ``repeats`` passes after one untimed warm-up pass (worker start, allocator)."""
    images_per_second(make_batches(), device, limit)
    return float(np.median([images_per_second(make_batches(), device, limit) for _ in range(repeats)]))


# -- correctness: the same crops and flips, pixel for pixel ---------------------------------------


def probe_images(n: int) -> np.ndarray:
    """Images whose channel 0 holds 8 x row and channel 1 holds 8 x column: each output pixel names its source."""
    grid = np.arange(32, dtype=np.uint8) * 8
    image = np.stack([np.repeat(grid[:, None], 32, 1), np.repeat(grid[None, :], 32, 0), np.zeros((32, 32), np.uint8)])
    return np.ascontiguousarray(np.broadcast_to(image, (n, 3, 32, 32)))


def _reflect(index: np.ndarray) -> np.ndarray:
    return np.where(index < 0, -index, np.where(index > 31, 62 - index, index))


def decode(batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Crop offsets (0..8 into the padded image), flips, and whether every pixel fits them exactly."""
    mean, std = np.array(CIFAR_MEAN)[:2, None, None], np.array(CIFAR_STD)[:2, None, None]
    pixels = batch.float().cpu().numpy()[:, :2] * std * 255 + mean * 255
    source = np.rint(pixels / 8).astype(int)  # [B, 2, H, W]: source row and column of each output pixel
    flips = source[:, 1, 0, 17] < source[:, 1, 0, 16]
    rows = source[:, 0, 16, 0] - 12
    cols = source[:, 1, 0, 16] - 12 + flips
    out = np.arange(32)
    want_rows = _reflect(out[None, :] + rows[:, None] - 4)[:, :, None]
    col_out = np.where(flips[:, None], 31 - out[None, :], out[None, :])
    want_cols = _reflect(col_out + cols[:, None] - 4)[:, None, :]
    exact = bool(np.all(source[:, 0] == want_rows) and np.all(source[:, 1] == want_cols)
                 and np.allclose(pixels, np.rint(pixels), atol=1e-2))
    return rows, cols, flips, exact


def check_same_augmentation(device: torch.device, n: int = PROBE_IMAGES) -> tuple[dict[str, bool], dict]:
    """Both pipelines on the probe images: exact crop/flip pixels, and one distribution of offsets and flips."""
    images = probe_images(n)
    ours = DeviceLoader(images, np.zeros(n, np.int64), BATCH_SIZE, CIFAR_MEAN, CIFAR_STD, augment="crop_flip",
                        device=device, channels_last=True)
    transform = baseline_transform()
    theirs = torch.stack([transform(Image.fromarray(image.transpose(1, 2, 0))) for image in images])
    decoded = {"ours": decode(torch.cat([x for x, _ in ours])), "baseline": decode(theirs)}
    p_values = {}
    for i, what in enumerate(("row_offset", "col_offset", "flip")):
        table = [np.bincount(np.asarray(decoded[side][i], dtype=int), minlength=9) for side in decoded]
        table = np.array(table)
        table = table[:, table.sum(0) > 0]
        p_values[what] = float(chi2_contingency(table).pvalue)
    checks = {
        "ours_pixels_are_exact_crop_flips": decoded["ours"][3],
        "baseline_pixels_are_exact_crop_flips": decoded["baseline"][3],
        "same_offset_and_flip_distribution": min(p_values.values()) > 1e-3,
        "all_9x9_offsets_and_both_flips_seen": all(
            len(np.unique(d[0])) == 9 and len(np.unique(d[1])) == 9 and len(np.unique(d[2])) == 2
            for d in decoded.values()),
    }
    return checks, {"chi2_p_values": p_values, "probe_images": n}


# -- benchmark ------------------------------------------------------------------------------------


def run(quick: bool = False, threads: int | None = None, images: int = 50_000) -> Row:
    threads = pin_threads(threads)
    device = benchmark_device()
    batches = 100 if quick else -(-images // BATCH_SIZE)
    repeats = 3 if quick else 5
    limit = min(batches, -(-images // BATCH_SIZE))
    log(f"loader: {images} images, {limit} batches x {repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp, cifar10_files(tmp, *make_images(images)):
        ours = median_rate(lambda loader=our_loader(tmp, device): iter(loader), device, limit, repeats)
        # The loader lives as the lambda's default: dropped (persistent workers stopped) once timed.
        baseline = median_rate(lambda loader=baseline_loader(tmp, device): iter(loader), device, limit, repeats)
    checks, details = check_same_augmentation(device, min(PROBE_IMAGES, images))
    workload = (f"{images} CIFAR-format uint8 images read from cifar-10-batches-py pickles, batch {BATCH_SIZE}, "
                f"crop(pad 4, reflect)+flip+normalise, {limit * BATCH_SIZE} images per pass, median of "
                f"{repeats} passes after 1 warm-up; baseline: torchvision transforms, DataLoader "
                f"{os.cpu_count()} workers")
    return Row("loader", ours, baseline, "images/s", speedup(ours, baseline, True), describe_device(device, threads),
               workload, checks, {"threads": threads, **details})
