"""Search efficiency: time to reach random search's final hypervolume on the quickstart space.

Ours is the quickstart default (multi-objective TPE + Pareto-aware successive
halving); the baseline is the same space with ``sampler="random"`` and
``scheduler="none"``, with the same number of trials and the same seed. The
hypervolume of the (val_error, params) front of fully trained trials is
tracked against the time since the run started, with one fixed reference point
(error 1.0, 1.1 x the space's parameter budget) for every run.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import torch

from wrn_search.pareto import COST_REFERENCE_FACTOR, hypervolume_history
from wrn_search.results import load_run
from wrn_search.search import run_search
from wrn_search.space import SearchSpace, load_space

from .common import Row, describe_device, log, pin_threads, speedup, start_ray, stop_ray

SPACE = "quickstart"
OBJECTIVES = ["val_error", "params"]


def history(space: SearchSpace, directory: Path, name: str) -> pd.DataFrame:
    """Hypervolume after each finished trial of one search, against seconds since the run started."""
    run_dir = run_search(space, name=name, storage_path=str(directory), verbose=0)
    reference = (1.0, COST_REFERENCE_FACTOR * space.budget.max_params)
    return hypervolume_history(load_run(run_dir), OBJECTIVES, reference)


def time_to(curve: pd.DataFrame, target: float) -> float:
    """Seconds until the hypervolume first reaches ``target`` (inf if it never does)."""
    reached = curve[curve["hypervolume"] >= target * (1 - 1e-12)]
    return float(reached["elapsed_seconds"].iloc[0]) if len(reached) else math.inf


def run(quick: bool = False, threads: int | None = None) -> Row:
    threads = pin_threads(threads)
    default = load_space(SPACE)
    samples, seeds = (8, [0]) if quick else (default.search.samples, [0, 1, 2])
    log(f"search_efficiency: {SPACE}, {samples} trials, seeds {seeds}, ours vs random without early stopping")
    per_seed = []
    start_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in seeds:
                ours_space = default.with_overrides(samples=samples, seed=seed)
                random_space = default.with_overrides(samples=samples, seed=seed, sampler="random", scheduler="none")
                ours = history(ours_space, Path(tmp), f"ours-{seed}")
                baseline = history(random_space, Path(tmp), f"random-{seed}")
                target = float(baseline["hypervolume"].iloc[-1]) if len(baseline) else 0.0
                per_seed.append({
                    "seed": seed, "target_hypervolume": target,
                    "ours_final_hypervolume": float(ours["hypervolume"].iloc[-1]) if len(ours) else 0.0,
                    "ours_seconds": time_to(ours, target), "baseline_seconds": time_to(baseline, target),
                    "ours_complete_trials": len(ours), "baseline_complete_trials": len(baseline),
                })
    finally:
        stop_ray()
    ratios = [speedup(s["ours_seconds"], s["baseline_seconds"], False) for s in per_seed]
    ours_s = statistics.median(s["ours_seconds"] for s in per_seed)
    base_s = statistics.median(s["baseline_seconds"] for s in per_seed)
    checks = {"baseline_front_nonempty": all(s["target_hypervolume"] > 0 for s in per_seed),
              "ours_front_nonempty": all(s["ours_complete_trials"] > 0 for s in per_seed)}
    mode = "QUICK MODE: fewer trials and one seed, " if quick else ""
    workload = (f"{mode}{SPACE} space (digits, {default.training.get('epochs')} epochs/trial), {samples} trials per "
                f"search, seeds {seeds}; seconds from run start until the (val_error, params) hypervolume of "
                f"fully trained trials reaches the baseline's final one; ratio = median over seeds of "
                f"baseline/ours; ours: {default.search.sampler} + {default.search.scheduler}; baseline: random, "
                "no early stopping")
    return Row("search_efficiency", ours_s, base_s, "s to baseline final HV", statistics.median(ratios),
               f"{describe_device(torch.device('cpu'), threads)}; Ray, 1 CPU per trial", workload, checks,
               {"threads": threads, "per_seed": per_seed, "ratios": ratios})
