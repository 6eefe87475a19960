"""The paper's reference WRNs (Zagoruyko & Komodakis 2016), to mark next to a search's front.

Errors are TEST errors in %, as printed (Table 4: width and depth, ZCA
preprocessing); a search reports validation error, so they are a landmark, not
a like-for-like comparison. Parameters and MACs come from the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

from wrn_search.network.spec import WRNSpec
from wrn_search.training.data import dataset_info

#: name -> (CIFAR-10, CIFAR-100) test error in %, None where the paper has no number.
TABLE_4 = {
    "WRN-40-1": (6.85, 30.89),
    "WRN-40-2": (5.33, 26.04),
    "WRN-40-4": (4.97, 22.89),
    "WRN-40-8": (4.66, None),
    "WRN-28-10": (4.17, 20.50),
    "WRN-28-12": (4.33, 20.43),
    "WRN-22-8": (4.38, 21.22),
    "WRN-22-10": (4.44, 20.75),
    "WRN-16-8": (4.81, 22.07),
    "WRN-16-10": (4.56, 21.59),
}
COLUMN = {"cifar10": 0, "cifar100": 1}


@dataclass(frozen=True)
class PaperPoint:
    name: str
    params: int
    macs: int
    test_error: float


def paper_points(dataset: str) -> list[PaperPoint]:
    """Reference WRNs for ``dataset`` (CIFAR-10 or CIFAR-100); none for other datasets."""
    if dataset not in COLUMN:
        return []
    info = dataset_info(dataset)
    points = []
    for name, errors in TABLE_4.items():
        error = errors[COLUMN[dataset]]
        if error is not None:
            spec = WRNSpec.parse(name)
            points.append(PaperPoint(spec.name, spec.num_params(info.num_classes, info.in_channels),
                                     spec.macs(info.input_size, info.num_classes, info.in_channels), error / 100))
    return points
