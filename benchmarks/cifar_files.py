"""CIFAR-10-shaped data written in CIFAR's own on-disk format, so both loaders read real files.

The images carry a learnable class signal (a fixed per-class template under
noise), so the training benchmarks can check that the loss falls.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from torchvision import datasets

CIFAR = datasets.CIFAR10


def make_images(n: int, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[n, 3, 32, 32]`` images (60% class template, 40% noise) and their labels."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (classes, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    noise = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    images = (0.6 * templates[labels] + 0.4 * noise).astype(np.uint8)
    return images, labels.astype(np.int64)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@contextmanager
def cifar10_files(root: str | Path, images: np.ndarray, labels: np.ndarray) -> Iterator[Path]:
    """Write ``cifar-10-batches-py`` under ``root`` (train: ``images`` in 5 files; test: a copy of the first).

    torchvision checks every file against the md5 sums of the real archive; while
    the context is open the class knows the md5 sums of these files instead, so
    the check still runs (and still fails on a corrupt file). Restored on exit.
    """
    folder = Path(root) / CIFAR.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    rows = images.reshape(len(images), -1)  # CIFAR rows: 1024 R, then G, then B bytes
    files = len(CIFAR.train_list)
    if len(rows) % files:
        raise ValueError(f"images: {len(rows)} images do not split evenly into CIFAR-10's {files} batch files")
    per_file = len(rows) // files
    chunks = [(rows[i:i + per_file], labels[i:i + per_file]) for i in range(0, len(rows), per_file)]
    for (name, _), (data, target) in zip(CIFAR.train_list + CIFAR.test_list, chunks + chunks[:1]):
        with open(folder / name, "wb") as file:
            pickle.dump({"data": data, "labels": target.tolist()}, file)
    with open(folder / CIFAR.meta["filename"], "wb") as file:
        pickle.dump({CIFAR.meta["key"]: [f"class{i}" for i in range(10)]}, file)
    saved = CIFAR.train_list, CIFAR.test_list, CIFAR.meta
    CIFAR.train_list = [[name, _md5(folder / name)] for name, _ in saved[0]]
    CIFAR.test_list = [[name, _md5(folder / name)] for name, _ in saved[1]]
    CIFAR.meta = {**saved[2], "md5": _md5(folder / saved[2]["filename"])}
    try:
        yield Path(root)
    finally:
        CIFAR.train_list, CIFAR.test_list, CIFAR.meta = saved
