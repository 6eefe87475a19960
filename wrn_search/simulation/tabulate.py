"""Record a benchmark table: train every config of a space's grid to its full epochs, per seed, on Ray.

Trials run like a search's (the same trainable, resources and dataset shipping), but the
configs are the whole grid times the seeds, handed out in order by :class:`ConfigList`.
Every reported epoch is appended (fsynced) to ``<stem>.partial.jsonl`` beside the table,
so a killed recording loses at most the curves in progress: a second call with the same
space and output skips every (config, seed) whose curve is complete in the table or in
that log, retrains the rest from epoch 1, and writes the table and its JSON atomically.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from ray import tune
from ray.tune.search import Searcher, SearchGenerator

from wrn_search import __version__
from wrn_search.runs.files import append_jsonl, read_jsonl
from wrn_search.search.cluster import ray_session
from wrn_search.search.interrupts import environment
from wrn_search.search.quiet import TUNE_NEW_OUTPUT_ENV
from wrn_search.search.trainable import build_trainable, load_space_dataset
from wrn_search.simulation.table import (
    CONFIG_COLUMNS,
    EPOCH_COLUMNS,
    FORMAT,
    Table,
    config_key,
    is_complete,
    load_table,
    table_paths,
    write_table,
)
from wrn_search.spaces.space import SearchSpace

#: Retries of a crashed recording trial (it restarts from its last checkpoint).
MAX_FAILURES = 2


class ConfigList(Searcher):
    """A searcher that hands out a fixed list of trial configs, then says FINISHED."""

    def __init__(self, configs: list[dict]):
        super().__init__()
        self.configs = list(configs)
        self.next = 0

    def suggest(self, trial_id: str) -> dict | None:
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        self.next += 1
        return self.configs[self.next - 1]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class CurveRecorder(tune.Callback):
    """Appends each reported epoch of a recording trial to the partial log, fsynced."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = str(path)
        self.columns = columns

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        record = {key: trial.config[key] for key in self.columns}
        record.update({key: result.get(key) for key in EPOCH_COLUMNS if key != "seed"})
        record["seed"] = trial.config["seed"]
        append_jsonl(Path(self.path), record)


def partial_log(path: Path) -> Path:
    csv_path, meta_path = table_paths(path)
    return meta_path.with_name(meta_path.name[: -len(".json")] + ".partial.jsonl")


def complete_curves(frame: pd.DataFrame, hyperparameters: tuple[str, ...], epochs: int) -> pd.DataFrame:
    """Rows of the (config, seed) curves that ended where training ends; a repeated epoch keeps its last row."""
    if frame.empty:
        return frame
    keys = ["name", *hyperparameters, "seed"]
    frame = frame.drop_duplicates([*keys, "epoch"], keep="last")
    done = frame.groupby(keys, sort=False).filter(
        lambda group: is_complete(group["epoch"].astype(int).tolist(), group["outcome"].tolist(), epochs))
    return done.reset_index(drop=True)


def existing_table(space: SearchSpace, out: Path) -> Table | None:
    """Check for a discrete space and an output path that can be a table; return the table already there
    (recorded with the same dataset and training sections), or None."""
    table_paths(out)
    if space.continuous:
        raise ValueError(f"{space.source}: tabulate needs a discrete grid, but {', '.join(space.continuous)} "
                         "is a continuous range; give choices (or a step)")
    if not out.exists():
        return None
    existing = load_table(out)
    existing.check_recipe(space)
    return existing


def tabulate(space: SearchSpace, seeds: int, out: str | Path, address: str | None = None, verbose: int = 1,
             argv: list[str] | None = None) -> Path:
    """Record (or complete) the table of ``space`` with seeds ``0..seeds-1`` at ``out``; return its path."""
    out = Path(out).expanduser().resolve()
    existing = existing_table(space, out)
    if not out.parent.is_dir():
        raise ValueError(f"out: {out.parent} is not a directory")
    hyperparameters = space.training_hyperparameters
    epochs = space.training.epochs
    log_path = partial_log(out)
    recorded = pd.concat([existing.frame if existing else pd.DataFrame(),
                          pd.DataFrame.from_records(read_jsonl(log_path))], ignore_index=True)
    recorded = complete_curves(recorded, hyperparameters, epochs)
    done = {(config_key(row, hyperparameters), int(row["seed"])) for row in recorded.to_dict("records")}
    configs = list(space.grid_configs())
    todo = [{**config, "seed": seed} for seed in range(seeds) for config in configs
            if (config_key(config, hyperparameters), seed) not in done]
    print(f"wrn-search: {len(todo)} of {seeds * len(configs)} curves to train "
          f"({len(done)} recorded) into {out}", flush=True)
    start = time.time()
    if todo:
        dataset = load_space_dataset(space)
        storage = tempfile.mkdtemp(prefix=".tabulate-", dir=out.parent)
        try:
            with ray_session(address):
                tuner = tune.Tuner(
                    build_trainable(space, dataset),
                    tune_config=tune.TuneConfig(search_alg=SearchGenerator(ConfigList(todo)), num_samples=len(todo),
                                                reuse_actors=True),
                    run_config=tune.RunConfig(
                        name="tabulate", storage_path=storage, verbose=verbose,
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                        callbacks=[CurveRecorder(log_path, (*CONFIG_COLUMNS, *hyperparameters))],
                    ),
                )
                with environment(TUNE_NEW_OUTPUT_ENV, "0") if not verbose else nullcontext():  # no start-up box
                    tuner.fit()
        finally:
            shutil.rmtree(storage, ignore_errors=True)
    recorded = complete_curves(pd.concat([recorded, pd.DataFrame.from_records(read_jsonl(log_path))],
                                         ignore_index=True), hyperparameters, epochs)
    previous = existing.meta.get("recorded", {}) if existing else {}
    meta = {
        "format": FORMAT,
        "space": space.to_dict(),
        "hyperparameters": list(hyperparameters),
        "recorded": {
            "seeds": seeds,
            "curves": int(recorded.groupby(["name", *hyperparameters, "seed"]).ngroups),
            "wall_seconds": round(previous.get("wall_seconds", 0) + time.time() - start, 1),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform(terse=True)}",
            "wrn_search_version": __version__,
            "command": " ".join(argv) if argv else None,
        },
    }
    write_table(recorded, meta, out)
    if meta["recorded"]["curves"] == seeds * len(configs):
        log_path.unlink(missing_ok=True)
    return out
