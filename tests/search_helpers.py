"""Small search spaces and a local Ray for the search tests."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_space(directory: Path, name: str = "tiny.yaml", **sections) -> Path:
    """A digits space of very small nets (a trial trains in about a second) with ``sections`` merged in."""
    document = {
        "dimensions": {"depth": {"min": 10, "max": 16}, "widen_factor": {"min": 1, "max": 2},
                       "block_types": ["B(3,3)", "B(3,1)"]},
        "dataset": {"name": "digits"},
        "training": {"epochs": 3, "batch_size": 128},
        "budget": {"max_params": 150_000},
        "search": {"objectives": ["val_error", "params"], "sampler": "random", "samples": 6,
                   "max_concurrent": 2, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(document.get(section), dict):
            document[section] = {**document[section], **values}
        else:
            document[section] = values
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
