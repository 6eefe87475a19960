"""Trial overhead: wall time of a search minus the training inside its trials, per trial.

Ours is ``wrn_search.search.orchestrate.run_search`` (dataset shipped once through Ray's
object store, actors reused, our study searcher, scheduler and per-epoch
checkpoints). The baseline is the same search written the naive way from the
Ray Tune docs: a function trainable that loads the dataset itself, a fresh
actor per trial and a plain multi-objective ``OptunaSearch``. Both train with
the same ``Trainer`` for one epoch, one trial at a time, so wall time minus the
summed in-trial epoch time is orchestration overhead and nothing else.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch
import yaml
from optuna.distributions import CategoricalDistribution
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from wrn_search.network.spec import WRNSpec
from wrn_search.search.orchestrate import run_search
from wrn_search.spaces.space import load_space
from wrn_search.training.data import load_dataset
from wrn_search.training.engine import TrainConfig, Trainer

from .common import Row, describe_device, log, pin_threads, speedup, start_ray, stop_ray

TRIALS = 16
ARCHITECTURES = ["WRN-10-0.5", "WRN-10-1", "WRN-10-1.5", "WRN-10-2"]
#: Searched beside the architecture so the space has ``TRIALS`` distinct configurations: a study never trains
#: one twice, and 4 architectures alone would end the search after 4 trials. The lr changes no trial's cost.
LRS = [0.025, 0.05, 0.1, 0.2]
TRAINING = {"epochs": 1, "batch_size": 64, "num_threads": 1}


def space_document() -> dict:
    """16 tiny WRN configurations on digits, one epoch each, one trial at a time: the space for ``run_search``."""
    return {
        "architectures": ARCHITECTURES,
        "dimensions": {"lr": LRS},
        "dataset": {"name": "digits"},
        "training": TRAINING,
        "search": {"objectives": ["val_error", "params"], "samples": TRIALS, "max_concurrent": 1, "seed": 0},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    }


def ours(directory: Path) -> dict:
    """Wall seconds, summed epoch seconds and completed trials of one ``run_search``, and where the rest went.

    ``startup_s`` is the time from the call to the first trial's first epoch
    (driver set-up, then the first worker importing Ray Tune and torch and
    building its first optimizer); ``warm_gap_s`` is the median time between one
    trial's reported epoch and the next trial's, less the next trial's training:
    the overhead per trial once the actor is warm.
    """
    path = directory / "trial-overhead.yaml"
    path.write_text(yaml.safe_dump(space_document()))
    space = load_space(path)
    start, start_clock = time.perf_counter(), time.time()
    results = run_search(space, name=f"ours-{uuid.uuid4().hex[:8]}", storage_path=str(directory), verbose=0)
    wall = time.perf_counter() - start
    trials, curves = results.trials, results.curves.sort_values("time")
    first_epoch_start = float(curves["time"].iloc[0] - curves["epoch_seconds"].iloc[0])
    return {"wall_s": wall, "training_s": float(trials["wall_seconds"].sum()),
            "trials": int((trials["state"] == "COMPLETE").sum()), "startup_s": first_epoch_start - start_clock,
            "warm_gap_s": float((curves["time"].diff() - curves["epoch_seconds"]).median())}


def naive_trial(config: dict) -> None:
    """What the Ray Tune quickstart leads to: everything, the data included, set up inside the trial."""
    data = load_dataset("digits")
    trainer = Trainer(WRNSpec.parse(config["architecture"]), data, TrainConfig(**TRAINING, lr=config["lr"]))
    metrics = trainer.fit().metrics
    tune.report({key: metrics[key] for key in ("val_error", "params", "epoch_seconds")})


def baseline(directory: Path) -> dict:
    """Wall seconds, summed epoch seconds and completed trials of the naive Tuner."""
    searcher = OptunaSearch({"architecture": CategoricalDistribution(ARCHITECTURES),
                             "lr": CategoricalDistribution(LRS)},
                            metric=["val_error", "params"],
                            mode=["min", "min"], study_name=f"naive-{uuid.uuid4().hex}", seed=0)
    tuner = tune.Tuner(
        tune.with_resources(naive_trial, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=TRIALS, max_concurrent_trials=1,
                                    reuse_actors=False),
        run_config=tune.RunConfig(name=f"naive-{uuid.uuid4().hex[:8]}", storage_path=str(directory), verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    done = [r for r in results if r.error is None and r.metrics]
    return {"wall_s": wall, "training_s": float(sum(r.metrics["epoch_seconds"] for r in done)), "trials": len(done)}


def run(quick: bool = False, threads: int | None = None) -> Row:
    threads = pin_threads(threads)  # the driver's; each trial trains with TRAINING's one thread
    repeats = 1 if quick else 3
    log(f"trial_overhead: {TRIALS} trials x {repeats} repeat(s) per side")
    measured: dict[str, list[dict]] = {"ours": [], "baseline": []}
    start_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(repeats):
                measured["ours"].append(ours(Path(tmp)))
                measured["baseline"].append(baseline(Path(tmp)))
    finally:
        stop_ray()
    per_trial = {side: statistics.median((run["wall_s"] - run["training_s"]) / TRIALS for run in runs)
                 for side, runs in measured.items()}
    startup = statistics.median(run["startup_s"] for run in measured["ours"])
    warm_gap = statistics.median(run["warm_gap_s"] for run in measured["ours"])
    checks = {f"{side}_all_{TRIALS}_trials_complete": all(run["trials"] == TRIALS for run in runs)
              for side, runs in measured.items()}
    checks["ours_under_0.5_s_per_trial"] = per_trial["ours"] < 0.5
    workload = (f"{TRIALS} trials of {', '.join(ARCHITECTURES)} x lr {LRS} on digits, 1 epoch each, 1 trial at a time, "
                f"Ray on {os.cpu_count()} CPUs started outside the timing; (wall - summed epoch_seconds) / trials, "
                f"median of {repeats} search(es); ours: {startup:.1f} s from the call to the first epoch, then "
                f"{warm_gap:.3f} s between warm trials; baseline: function trainable loading the data per trial, "
                "reuse_actors=False, plain OptunaSearch")
    details = {"threads": threads, "ours_startup_s": startup, "ours_warm_gap_s": warm_gap,
               **{f"{side}_runs": runs for side, runs in measured.items()}}
    return Row("trial_overhead", per_trial["ours"], per_trial["baseline"], "s/trial",
               speedup(per_trial["ours"], per_trial["baseline"], False),
               f"{describe_device(torch.device('cpu'), TRAINING['num_threads'])}; Ray, 1 CPU per trial",
               workload, checks, details)
