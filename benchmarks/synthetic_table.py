"""Synthetic benchmark tables in the real on-disk format: for tests of the table and the simulator, and for
benchmarks that need more configurations than a table recorded on this machine holds (``decision_latency``).
Their ``recorded.synthetic`` is true, so a benchmark row says SYNTHETIC."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from wrn_search.simulation.table import FORMAT, write_table
from wrn_search.spaces.space import SearchSpace


def synthetic_rows(space: SearchSpace, seeds: int) -> pd.DataFrame:
    """Every grid config x seed x epoch: bigger nets end lower, slower; each seed adds its own noise."""
    epochs = space.training.epochs
    rows = []
    for index, config in enumerate(space.grid_configs()):
        floor = 0.4 / math.log10(config["params"]) + 0.05 * abs(math.log10(config.get("lr", 0.1) / 0.1))
        for seed in range(seeds):
            noise = np.random.default_rng([index, seed]).normal(0, 0.01, epochs)
            for epoch in range(1, epochs + 1):
                error = floor + (0.9 - floor) * math.exp(-epoch / 2) + noise[epoch - 1]
                rows.append({**{k: v for k, v in config.items()}, "seed": seed, "epoch": epoch,
                             "train_loss": 2 * error, "val_loss": 2.1 * error, "val_error": min(1.0, max(0.0, error)),
                             "epoch_seconds": 0.01 * config["macs"] ** 0.5 * (1 + 0.1 * seed),
                             "outcome": "completed"})
    return pd.DataFrame.from_records(rows)


def write_synthetic_table(space: SearchSpace, path: str | Path, seeds: int = 2) -> Path:
    """A table of every grid point of ``space`` with ``seeds`` synthetic curves each, written to ``path``."""
    meta = {"format": FORMAT, "space": space.to_dict(), "hyperparameters": list(space.training_hyperparameters),
            "recorded": {"seeds": seeds, "synthetic": True}}
    write_table(synthetic_rows(space, seeds), meta, path)
    return Path(path)
