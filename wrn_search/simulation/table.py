"""Benchmark tables: real learning curves of every config of a space's grid, per seed, for the simulator.

A table is a CSV (``.csv`` or ``.csv.gz``) with one row per (config, seed, epoch), and
beside it a JSON file of the same stem with the space it was recorded on, its seeds
and how it was recorded. ``wrn-search tabulate`` writes both; ``wrn-search simulate``
replays them (:mod:`wrn_search.simulation.simulate`). Tables shipped with the package are named
by their stem (``digits-wrn``). Like NAS-Bench and Syne Tune's blackbox repository,
every config is trained to its full epochs, so a table also knows the exact optimal
front of its space.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from wrn_search.errors import BadInput
from wrn_search.network.spec import SPEC_COLUMNS
from wrn_search.pareto import FrontScale
from wrn_search.plain import plain
from wrn_search.records import FAILED_OUTCOMES, TRAINING_OUTCOMES
from wrn_search.runs.files import write_atomic
from wrn_search.spaces.schema import DatasetSection, config_key
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.recipe import MAX_EPOCHS, TrainConfig

FORMAT = "wrn-search-table-v1"
#: A config's columns: its architecture and cost; the searched training hyperparameters the space has follow.
CONFIG_COLUMNS = (*SPEC_COLUMNS, "params", "macs")
#: What each row records of one epoch.
EPOCH_COLUMNS = ("seed", "epoch", "train_loss", "val_loss", "val_error", "epoch_seconds", "outcome")
#: (lowest, highest, integer) of the numeric columns a table is checked for when it loads.
VALUE_RANGES = {
    "seed": (0, 2**31 - 1, True), "epoch": (1, MAX_EPOCHS, True), "val_error": (0, 1, False),
    "epoch_seconds": (0, 1e9, False), "params": (0, 1e15, True), "macs": (0, 1e18, True),
}
SUFFIXES = (".csv", ".csv.gz")


def table_paths(path: str | Path) -> tuple[Path, Path]:
    """The table's CSV and its metadata JSON (same stem); the CSV must end in .csv or .csv.gz."""
    path = Path(path)
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise BadInput(f"table: {str(path)!r} must end in .csv or .csv.gz")
    return path, path.with_name(path.name[: -len(suffix)] + ".json")


def ready_tables() -> list[str]:
    """Names of the tables shipped with the package."""
    return sorted(entry.name[: -len(".json")] for entry in files("wrn_search.tables").iterdir()
                  if entry.name.endswith(".json"))



def describe_key(key: tuple, hyperparameters: tuple[str, ...]) -> str:
    return " ".join([key[0], *(f"{name}={value:g}" for name, value in zip(hyperparameters, key[1:]))])


def is_complete(epochs: list[int], outcomes: list[str], full_epochs: int) -> bool:
    """Whether a recorded curve ends where training ended: at the full epochs, or at a divergence."""
    return bool(epochs) and sorted(epochs) == list(range(1, max(epochs) + 1)) and (
        max(epochs) == full_epochs or outcomes[int(np.argmax(epochs))] in FAILED_OUTCOMES)


@dataclass(frozen=True)
class Curve:
    """One config's recorded epochs under one seed."""

    val_error: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    epoch_seconds: np.ndarray
    outcome: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.val_error)


@dataclass
class Table:
    """A loaded table: its rows, the space it was recorded on, and every curve by (config key, seed)."""

    frame: pd.DataFrame
    meta: dict
    source: str
    curves: dict[tuple, Curve] = field(default_factory=dict, repr=False)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        return tuple(self.meta["hyperparameters"])

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(int(seed) for seed in self.frame["seed"].unique()))

    @property
    def epochs(self) -> int:
        return self.recipe.epochs

    @property
    def recipe(self) -> TrainConfig:
        """The training recipe the table was recorded with."""
        return TrainConfig(**self.meta["space"]["training"])

    def curve(self, config: dict, seed: int) -> Curve:
        key = config_key(config, self.hyperparameters)
        try:
            return self.curves[(key, seed)]
        except KeyError:
            raise BadInput(f"table {self.source}: no curve of {describe_key(key, self.hyperparameters)} "
                           f"with seed {seed}") from None

    def final(self, seed: int | None = None) -> pd.DataFrame:
        """The last recorded epoch of every config (of one seed, or all): what full training gives."""
        frame = self.frame if seed is None else self.frame[self.frame["seed"] == seed]
        return frame.sort_values("epoch", kind="stable").groupby(
            ["name", *self.hyperparameters, "seed"], sort=False).tail(1).reset_index(drop=True)

    def scale(self) -> FrontScale:
        """The normalised hypervolume of this table's space: params from its smallest to its largest config,
        error referenced at the worst error of a fully trained config (any seed)."""
        final = self.final()
        return FrontScale(float(final["params"].min()), float(final["params"].max()),
                          float(final["val_error"].max()))

    def optimal_hypervolume(self, seed: int) -> float:
        """The best normalised hypervolume a search replaying ``seed`` can reach: every config fully trained."""
        final = self.final(seed)
        final = final[final["epoch"] == self.epochs]
        return self.scale().hypervolume(final["val_error"], final["params"])

    def check_recipe(self, space: SearchSpace) -> None:
        """Refuse a space whose dataset or training sections differ from the ones the table was recorded with."""
        # A dataset field added after the table was recorded counts at its default.
        recorded = {"dataset": {**asdict(DatasetSection()), **self.meta["space"]["dataset"]},
                    "training": self.recipe.recipe()}
        resolved = {"dataset": asdict(space.dataset), "training": space.training.recipe()}
        for section in ("dataset", "training"):
            ours, theirs = resolved[section], recorded[section]
            differ = [key for key in {**theirs, **ours} if ours.get(key) != theirs.get(key)]
            if differ:
                raise BadInput(f"table {self.source}: recorded with {section} "
                               f"{', '.join(f'{key}={theirs.get(key)!r}' for key in differ)}, but the space has "
                               f"{', '.join(f'{key}={ours.get(key)!r}' for key in differ)}")

    def check_covers(self, space: SearchSpace) -> None:
        """Refuse a space that this table cannot replay: another recipe or dataset, or a grid point not recorded."""
        self.check_recipe(space)
        extra = [name for name in space.training_hyperparameters if name not in self.hyperparameters]
        if extra:
            raise BadInput(f"table {self.source}: the space searches {', '.join(extra)}, "
                           f"which the table does not vary")
        fixed = [name for name in self.hyperparameters if name not in space.training_hyperparameters]
        if fixed:
            values = {name: sorted({key[1 + self.hyperparameters.index(name)] for key, _ in self.curves})
                      for name in fixed}
            raise BadInput(f"table {self.source}: varies {', '.join(fixed)}, which the space does not search; "
                           "list the values to replay under dimensions: "
                           + "; ".join(f"{name}: {[float(v) for v in vs]}" for name, vs in values.items()))
        try:
            configs = list(space.grid_configs())
        except ValueError as error:
            raise BadInput(f"table {self.source}: {error}") from None
        seeds = self.seeds
        for config in configs:
            key = config_key(config, self.hyperparameters)
            for seed in seeds:
                if (key, seed) not in self.curves:
                    raise BadInput(f"table {self.source}: {describe_key(key, self.hyperparameters)} seed {seed} "
                                   f"is not in the table; record it with wrn-search tabulate")


def load_table(name_or_path: str | Path) -> Table:
    """Read a table (a .csv/.csv.gz path, or a shipped table's name) with its JSON metadata and check it."""
    text = str(name_or_path)
    if any(text.endswith(suffix) for suffix in SUFFIXES) or Path(text).exists() or len(Path(text).parts) > 1:
        csv_path, meta_path = table_paths(text)
        source = text
    else:
        resource = files("wrn_search.tables")
        meta_path = resource / f"{text}.json"
        if not meta_path.is_file():
            raise BadInput(f"table: {text!r} is neither a .csv/.csv.gz file nor a shipped table; "
                           f"shipped tables: {', '.join(ready_tables())}")
        csv_path, source = resource / f"{text}.csv.gz", text
    for path in (csv_path, meta_path):
        if not path.is_file():
            raise BadInput(f"table {source}: {path} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadInput(f"table {source}: {meta_path} is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BadInput(f"table {source}: {meta_path} is not a {FORMAT} table description")
    try:
        with csv_path.open("rb") as file:
            frame = pd.read_csv(file, compression="gzip" if csv_path.name.endswith(".gz") else None)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError, EOFError) as error:
        raise BadInput(f"table {source}: {csv_path} is not a readable CSV ({' '.join(str(error).split())})") from None
    return _validated(frame, meta, source)


def _validated(frame: pd.DataFrame, meta: dict, source: str) -> Table:
    hyperparameters = tuple(meta.get("hyperparameters", ()))
    required = (*CONFIG_COLUMNS, *hyperparameters, *EPOCH_COLUMNS)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise BadInput(f"table {source}: columns {', '.join(missing)} are missing; a table has {', '.join(required)}")
    for column in ("seed", "epoch", "val_error", "epoch_seconds", "params", "macs", *hyperparameters):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().argmax())
            raise BadInput(f"table {source}: column {column} has a non-number in data row {row + 1}")
        low, high, integer = VALUE_RANGES.get(column, (-math.inf, math.inf, False))
        bad = ~np.isfinite(values) | (values < low) | (values > high) | (integer & (values != np.round(values)))
        if bad.any():
            row = int(bad.to_numpy().argmax())
            kind = "an integer" if integer else "a finite number"
            raise BadInput(f"table {source}: column {column} must be {kind} from {low:g} to {high:g}; data row "
                           f"{row + 1} has {frame[column].iloc[row]}")
    outcomes = ~frame["outcome"].isin([outcome.value for outcome in TRAINING_OUTCOMES])
    if outcomes.any():
        row = int(outcomes.to_numpy().argmax())
        raise BadInput(f"table {source}: column outcome must be one of {', '.join(TRAINING_OUTCOMES)}; "
                       f"data row {row + 1} "
                       f"has {frame['outcome'].iloc[row]!r}")
    if frame.empty:
        raise BadInput(f"table {source}: has no rows")
    table = Table(frame, meta, source)
    epochs = table.epochs
    frame = frame.sort_values(["seed", "epoch"], kind="stable")
    # The rows of each (config, seed) in the groupby's order, as slices of whole columns: a 100,000-config
    # table loads in seconds (iterating the groupby's frames took most of a minute).
    keys = ["name", *hyperparameters, "seed"]
    codes = frame.groupby(keys, sort=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    order = order[codes[order] >= 0]
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]]) if len(order) else order
    ends = np.r_[starts[1:], len(order)].astype(int)
    column = {name: frame[name].to_numpy()[order] for name in keys}
    numbers = {name: frame[name].to_numpy(float)[order] for name in ("val_error", "train_loss", "val_loss",
                                                                     "epoch_seconds", "epoch")}
    outcomes = frame["outcome"].to_numpy()[order]
    for start, end in zip(starts.tolist(), ends.tolist()):
        config = {name: column[name][start] for name in ("name", *hyperparameters)}
        seed = column["seed"][start]
        epoch_values, outcome = numbers["epoch"][start:end], tuple(outcomes[start:end].tolist())
        if not is_complete(epoch_values.astype(int).tolist(), list(outcome), epochs):
            raise BadInput(f"table {source}: {describe_key(config_key(config, hyperparameters), hyperparameters)} "
                           f"seed {seed} has epochs {frame['epoch'].to_numpy()[order][start:end].tolist()}, "
                           f"not 1..{epochs}")
        table.curves[(config_key(config, hyperparameters), int(seed))] = Curve(
            numbers["val_error"][start:end], numbers["train_loss"][start:end], numbers["val_loss"][start:end],
            numbers["epoch_seconds"][start:end], outcome)
    return table


def write_table(frame: pd.DataFrame, meta: dict, path: str | Path) -> None:
    """Write the rows (sorted by config, seed, epoch) and the metadata, each atomically."""
    csv_path, meta_path = table_paths(path)
    hyperparameters = tuple(meta["hyperparameters"])
    columns = [*CONFIG_COLUMNS, *hyperparameters, *EPOCH_COLUMNS]
    frame = frame[columns].sort_values(["params", "name", *hyperparameters, "seed", "epoch"], kind="stable")
    compression = "gzip" if csv_path.name.endswith(".gz") else None
    temp = csv_path.with_name(f".{csv_path.name}.partial")
    frame.to_csv(temp, index=False, compression={"method": "gzip", "mtime": 0} if compression else None)
    temp.replace(csv_path)
    write_atomic(meta_path, json.dumps(plain(meta), indent=1) + "\n")

