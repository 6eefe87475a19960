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
    """Every grid config x seed x epoch: bigger nets end lower, slower; each seed adds its own noise.

    Built column by column (a 100,000-configuration grid is a million rows); the values are those of the
    row-by-row definition: ``error = floor + (0.9 - floor) * exp(-epoch / 2) + noise``, noise drawn per
    (config index, seed)."""
    epochs = space.training.epochs
    configs = pd.DataFrame.from_records(list(space.grid_configs()))
    count = len(configs)
    floor = np.array([0.4 / math.log10(config["params"]) + 0.05 * abs(math.log10(config.get("lr", 0.1) / 0.1))
                      for config in configs.to_dict("records")], dtype=float)
    seed = np.tile(np.repeat(np.arange(seeds), epochs), count)
    epoch = np.tile(np.arange(1, epochs + 1), count * seeds)
    noise = np.concatenate([np.random.default_rng([index, s]).normal(0, 0.01, epochs)
                            for index in range(count) for s in range(seeds)]) if count else np.zeros(0)
    rows = configs.loc[configs.index.repeat(seeds * epochs)].reset_index(drop=True)
    floor = np.repeat(floor, seeds * epochs)
    error = floor + (0.9 - floor) * np.array([math.exp(-e / 2) for e in range(1, epochs + 1)])[epoch - 1] + noise
    macs = rows["macs"].to_numpy(float)
    return rows.assign(seed=seed, epoch=epoch, train_loss=2 * error, val_loss=2.1 * error,
                       val_error=np.clip(error, 0.0, 1.0), epoch_seconds=0.01 * macs ** 0.5 * (1 + 0.1 * seed),
                       outcome="completed")


def write_synthetic_table(space: SearchSpace, path: str | Path, seeds: int = 2) -> Path:
    """A table of every grid point of ``space`` with ``seeds`` synthetic curves each, written to ``path``."""
    meta = {"format": FORMAT, "space": space.to_dict(), "hyperparameters": list(space.training_hyperparameters),
            "recorded": {"seeds": seeds, "synthetic": True}}
    write_table(synthetic_rows(space, seeds), meta, path)
    return Path(path)
