"""Datasets by name: static metadata here, loading below.

``dataset_info(name)`` is cheap (no files are read): the search space uses it to
evaluate parameter and MAC budgets at the dataset's input size and class count.
``load_dataset(name)`` returns whole splits as uint8 NCHW numpy arrays, the form
the device-resident loader copies to the training device in one go and Ray
ships to trials through its object store without pickling images one by one.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wrn_search.checks import require_int, require_number
from wrn_search.errors import BadInput


@dataclass(frozen=True)
class DatasetInfo:
    """What the model and the loader need to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Default batch augmentation: "crop_flip" (CIFAR recipe) or "none".
    augment: str = "none"
    #: True for datasets that need files from torchvision (and network to fetch them).
    needs_files: bool = False


CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 3, (32, 32), CIFAR_MEAN, CIFAR_STD, "crop_flip", True),
    "cifar100": DatasetInfo("cifar100", 100, 3, (32, 32), CIFAR_MEAN, CIFAR_STD, "crop_flip", True),
    # The paper feeds SVHN as pixels / 255 with no normalisation and no augmentation.
    "svhn": DatasetInfo("svhn", 10, 3, (32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "none", True),
    # scikit-learn's bundled 8x8 handwritten digits, scaled from 0..16 to 0..255.
    "digits": DatasetInfo("digits", 10, 1, (8, 8), (0.3063,), (0.3756,), "none"),
    "synthetic": DatasetInfo("synthetic", 10, 3, (32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "none"),
}


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a registered dataset; unknown names are a ``ValueError`` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise BadInput(f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


#: Where torchvision datasets live unless ``root`` is given; ``$WRN_SEARCH_DATA`` overrides it.
DEFAULT_ROOT = "~/.cache/wrn-search/datasets"

#: Fraction of scikit-learn's digits held out as a fixed test set (it ships no split).
DIGITS_TEST_FRACTION = 0.2

_SYNTHETIC_DEFAULTS = {"train_size": 1024, "test_size": 256, "num_classes": 10, "in_channels": 3, "input_size": 32}

_DOWNLOADS = {
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "svhn": ("svhn", "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat, extra_32x32.mat)"),
}


@dataclass(frozen=True)
class Split:
    """Images as uint8 ``[N, C, H, W]`` (C-contiguous) and int64 labels ``[N]``.

    The arrays may be read-only (Ray's object store hands them out that way);
    nothing in the package writes to them.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or not self.images.flags.c_contiguous:
            raise BadInput(f"images: need a C-contiguous uint8 [N, C, H, W] array, got {self.images.dtype} "
                           f"{self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != self.images.shape[:1]:
            raise BadInput(f"labels: need int64 [{len(self.images)}], got {self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Split:
        return Split(np.ascontiguousarray(self.images[indices]), self.labels[indices])

    @staticmethod
    def concat(*splits: Split) -> Split:
        return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]))


@dataclass(frozen=True)
class Dataset:
    """A dataset's metadata and its train, validation and test splits.

    ``val`` is carved from the official training set with a seeded permutation:
    the search selects architectures on it and never looks at ``test``.
    """

    info: DatasetInfo
    train: Split
    val: Split
    test: Split

    def merged(self) -> Dataset:
        """Train + val as the training split and an empty val: for the final retraining of a chosen model."""
        empty = Split(self.val.images[:0], self.val.labels[:0])
        return replace(self, train=Split.concat(self.train, self.val), val=empty)


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False,
                 val_fraction: float = 0.1, seed: int = 0, **options) -> Dataset:
    """Load a registered dataset and split a seeded ``val_fraction`` off its training set.

    ``root`` (default ``$WRN_SEARCH_DATA`` or ``~/.cache/wrn-search/datasets``)
    and ``download`` matter only for the torchvision datasets. Options:
    ``svhn`` takes ``extra=True`` (add the 531k extra images to train, as the
    paper does); ``synthetic`` takes ``train_size``, ``test_size``,
    ``num_classes``, ``in_channels`` and ``input_size``.
    """
    info = dataset_info(name)
    require_number(val_fraction, "val_fraction", 0, 1, open_high=True)
    require_int(seed, "seed", 0)
    allowed = {"svhn": {"extra"}, "synthetic": set(_SYNTHETIC_DEFAULTS)}.get(name, set())
    for key in options:
        if key not in allowed:
            choices = ", ".join(sorted(allowed)) or "none"
            raise BadInput(f"{key}: not an option of dataset {name!r} (options: {choices})")
    if name == "digits":
        train, test = _load_digits()
    elif name == "synthetic":
        info, train, test = _make_synthetic(info, seed, **options)
    else:
        train, test = _load_torchvision(name, Path(os.path.expanduser(root or os.environ.get(
            "WRN_SEARCH_DATA", DEFAULT_ROOT))), download, **options)
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = int(round(val_fraction * len(train)))
    if len(train) - n_val < 1:
        raise BadInput(f"val_fraction: {val_fraction} leaves no training images out of {len(train)}")
    return Dataset(info, train.take(np.sort(order[n_val:])), train.take(np.sort(order[:n_val])), test)


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (pixels 0..16 of shape (1797, 8, 8), labels).

    The CSV is read straight from the installed package: importing ``sklearn.datasets``
    costs about a second, a fifth of a small search's start-up. ``load_digits`` is the
    fallback should a scikit-learn release move the file.
    """
    package = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = Path(package.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if package else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def _load_digits() -> tuple[Split, Split]:
    """scikit-learn's 1797 8x8 digits, scaled to 0..255, with a fixed 20% test set."""
    pixels, labels = _read_digits()
    images = np.rint(pixels * (255 / 16)).astype(np.uint8)[:, None]
    everything = Split(np.ascontiguousarray(images), labels.astype(np.int64))
    order = np.random.default_rng(20160523).permutation(len(everything))  # fixed, independent of ``seed``
    n_test = int(round(DIGITS_TEST_FRACTION * len(everything)))
    return everything.take(np.sort(order[n_test:])), everything.take(np.sort(order[:n_test]))


def _make_synthetic(info: DatasetInfo, seed: int, **options) -> tuple[DatasetInfo, Split, Split]:
    """Uniform random pixels and labels: no signal, only shapes, for speed tests."""
    settings = {**_SYNTHETIC_DEFAULTS, **options}
    for key, value in settings.items():
        require_int(value, key, 0 if key == "test_size" else 1)
    channels, size, classes = settings["in_channels"], settings["input_size"], settings["num_classes"]
    info = replace(info, num_classes=classes, in_channels=channels, input_size=(size, size),
                   mean=(0.5,) * channels, std=(0.29,) * channels)
    rng = np.random.default_rng([seed, 0x5EED])

    def split(n: int) -> Split:
        return Split(rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8),
                     rng.integers(0, classes, n, dtype=np.int64))

    return info, split(settings["train_size"]), split(settings["test_size"])


def _load_torchvision(name: str, root: Path, download: bool, extra: bool = False) -> tuple[Split, Split]:
    """CIFAR / SVHN through torchvision, which checks the files' md5 sums."""
    from torchvision import datasets

    folder, url = _DOWNLOADS[name]
    try:
        if name == "svhn":
            parts = ("train", "extra") if extra else ("train",)
            train = Split.concat(*(_svhn_split(datasets.SVHN(root / folder, part, download=download))
                                   for part in parts))
            test = _svhn_split(datasets.SVHN(root / folder, "test", download=download))
        else:
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            train = _cifar_split(cls(str(root), train=True, download=download))
            test = _cifar_split(cls(str(root), train=False, download=download))
    except (RuntimeError, OSError) as error:  # torchvision: missing or md5 mismatch; urllib: no network
        hint = "" if download else " or pass download=True (--download) where there is network"
        raise FileNotFoundError(
            f"dataset: {name} files are missing or corrupt under {root / folder} ({error}); "
            f"put the extracted files from {url} there{hint}"
        ) from error
    return train, test


def _cifar_split(dataset) -> Split:
    images = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))  # torchvision keeps NHWC
    return Split(images, np.asarray(dataset.targets, dtype=np.int64))


def _svhn_split(dataset) -> Split:
    return Split(np.ascontiguousarray(dataset.data), dataset.labels.astype(np.int64))
