"""Datasets by name: static metadata here, loading below.

``dataset_info(name)`` is cheap (no files are read): the search space uses it to
evaluate parameter and MAC budgets at the dataset's input size and class count.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        raise ValueError(f"dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
