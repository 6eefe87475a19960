"""GPU packing: trials per hour of 16 small WRN trials with ``gpus_per_trial: auto`` against one trial per GPU.

Both searches train the same 16 grid configs (WRN-16-1 and WRN-16-2 x 4 learning
rates x 2 dropouts, synthetic 32x32 images made in-process, a few epochs, no early
stopping) through ``run_search`` on one GPU, one after the other in one Ray session
started outside the timing, ours first (a cold start counts against it). Ours is
``gpus_per_trial: auto`` (``AutoGPUResources`` gives a small net 1/8 of the GPU, so up
to ``MAX_CONCURRENT`` trials share it); the baseline is ``gpus_per_trial: 1``. Ray is
told of one GPU even on a bigger node: with several, one trial per GPU would also run
trials side by side and hide the packing.

CUDA only. Without it the row is a placeholder that still prints and serialises:
``workload`` says ``skipped: no CUDA``, ours, baseline and ratio are 0 (nothing was
measured, so nothing reads as a win) and ``checks`` is empty (no check ran, none fails).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import torch
import yaml

from wrn_search.search.orchestrate import run_search
from wrn_search.spaces.space import load_space

from .common import Row, log, speedup, start_ray, stop_ray

TRIALS = 16
ARCHITECTURES = ["WRN-16-1", "WRN-16-2"]
MAX_CONCURRENT = 8
SKIPPED = "skipped: no CUDA"


def space_document(gpus_per_trial: float | str, epochs: int) -> dict:
    """The 16-config grid on synthetic data; ``cpus_per_trial`` leaves a core per packed trial where there is one."""
    return {
        "architectures": ARCHITECTURES,
        "dimensions": {"lr": [0.02, 0.05, 0.1, 0.2], "dropout": [0.0, 0.3]},
        "dataset": {"name": "synthetic"},
        "training": {"epochs": epochs, "batch_size": 64, "num_threads": 1},
        "search": {"objectives": ["val_error", "params"], "sampler": "grid", "scheduler": "none",
                   "samples": TRIALS, "max_concurrent": MAX_CONCURRENT, "seed": 0},
        "resources": {"cpus_per_trial": min(1.0, (os.cpu_count() or 1) / MAX_CONCURRENT),
                      "gpus_per_trial": gpus_per_trial},
    }


def most_at_once(curves: pd.DataFrame) -> int:
    """The most trials training at one moment: a trial trains from its first epoch's start to its last epoch's end.

    Not the searcher's start times: Tune asks for trials before it has the resources to run them.
    """
    starts = (curves["time"] - curves["epoch_seconds"]).groupby(curves["number"]).min()
    ends = curves.groupby("number")["time"].max()
    events = sorted([(start, 1) for start in starts] + [(end, -1) for end in ends])
    running = peak = 0
    for _, step in events:  # at equal times ends (-1) sort first: back-to-back trials do not overlap
        running += step
        peak = max(peak, running)
    return peak


def search(gpus_per_trial: float | str, epochs: int, directory: Path) -> dict:
    """Wall seconds, trials completed, trials per hour, the GPU shares granted and the most trials at once."""
    path = directory / f"packing-{gpus_per_trial}.yaml"
    path.write_text(yaml.safe_dump(space_document(gpus_per_trial, epochs)))
    start = time.perf_counter()
    results = run_search(load_space(path), name=f"packing-{gpus_per_trial}-{uuid.uuid4().hex[:8]}",
                         storage_path=str(directory), verbose=0)
    wall = time.perf_counter() - start
    completed = int((results.trials["state"] == "COMPLETE").sum())
    curves = results.curves
    shares = sorted({float(resources.get("GPU", 0)) for resources in curves["resources"]})
    return {"gpus_per_trial": gpus_per_trial, "wall_s": wall, "completed": completed,
            "trials_per_hour": completed / wall * 3600, "gpu_shares": shares, "most_at_once": most_at_once(curves)}


def skipped_row() -> Row:
    log(f"gpu_packing: {SKIPPED}")
    return Row("gpu_packing", 0.0, 0.0, "trials/h", 0.0, "cpu (no CUDA)", SKIPPED, {}, {"skipped": "no CUDA"})


def run(quick: bool = False, threads: int | None = None) -> Row:
    if not torch.cuda.is_available():
        return skipped_row()
    epochs = 2 if quick else 4
    log(f"gpu_packing: {TRIALS} trials x {epochs} epochs, gpus_per_trial auto vs 1, on one GPU")
    start_ray(num_gpus=1)  # Ray told of one GPU, whatever the node has
    try:
        with tempfile.TemporaryDirectory() as tmp:
            auto = search("auto", epochs, Path(tmp))  # first: a cold start counts against ours
            one = search(1, epochs, Path(tmp))
    finally:
        stop_ray()
    checks = {f"{side}_all_{TRIALS}_trials_complete": measured["completed"] == TRIALS
              for side, measured in (("auto", auto), ("one_per_gpu", one))}
    checks["auto_shared_the_gpu"] = max(auto["gpu_shares"]) < 1 and auto["most_at_once"] > 1
    checks["one_per_gpu_ran_one_at_a_time"] = one["most_at_once"] == 1
    workload = (f"{'QUICK MODE: fewer epochs, ' if quick else ''}{TRIALS} trials ({', '.join(ARCHITECTURES)} x 4 lr "
                f"x 2 dropout, grid), synthetic 32x32 data, {epochs} epochs, no early stopping, "
                f"max_concurrent {MAX_CONCURRENT}, Ray told of 1 GPU; completed trials per hour of run_search wall "
                f"time; ours gpus_per_trial auto (shares {auto['gpu_shares']}, up to {auto['most_at_once']} at "
                f"once, {auto['wall_s']:.0f} s), baseline 1 ({one['wall_s']:.0f} s)")
    name = torch.cuda.get_device_name(0)
    return Row("gpu_packing", auto["trials_per_hour"], one["trials_per_hour"], "trials/h",
               speedup(auto["trials_per_hour"], one["trials_per_hour"], True), f"{name}; Ray, 1 GPU",
               workload, checks, {"auto": auto, "one_per_gpu": one, "epochs": epochs})
