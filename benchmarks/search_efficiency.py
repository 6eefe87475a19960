"""Search efficiency: time to reach random search's final hypervolume on the quickstart space, same epoch budget.

Ours is the quickstart default (multi-objective TPE + Pareto-aware successive
halving); the baseline is the same space with ``sampler="random"`` and
``scheduler="none"``. Both get the same compute budget: the baseline trains
``trials`` architectures fully, and ours may train as many epochs in all
(``search.epoch_budget``), spending what early stopping saves on more
architectures. The hypervolume of the (val_error, params) front of fully
trained trials is tracked against the time since the run started, with one
fixed reference point (error 1.0, 1.1 x the space's parameter budget) for
every run.
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
#: Ours may start this many times the baseline's trials; the epoch budget ends it long before.
TRIAL_CAP = 10


def search(space: SearchSpace, directory: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One search's trials and its hypervolume after each finished trial, against seconds since it started."""
    run_dir = run_search(space, name=name, storage_path=str(directory), verbose=0)
    trials = load_run(run_dir)
    reference = (1.0, COST_REFERENCE_FACTOR * space.budget.max_params)
    return trials, hypervolume_history(trials, OBJECTIVES, reference)


def time_to(curve: pd.DataFrame, target: float) -> float:
    """Seconds until the hypervolume first reaches ``target`` (inf if it never does)."""
    reached = curve[curve["hypervolume"] >= target * (1 - 1e-12)]
    return float(reached["elapsed_seconds"].iloc[0]) if len(reached) else math.inf


def final(curve: pd.DataFrame) -> float:
    return float(curve["hypervolume"].iloc[-1]) if len(curve) else 0.0


def run(quick: bool = False, threads: int | None = None) -> Row:
    threads = pin_threads(threads)
    default = load_space(SPACE)
    trials = 8 if quick else default.search.samples
    seeds = [0, 1, 2]
    epochs = int(default.training["epochs"])
    budget = trials * epochs
    log(f"search_efficiency: {SPACE}, {budget} epochs ({trials} full trials), seeds {seeds}, "
        "ours vs random without early stopping")
    per_seed = []
    start_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in seeds:
                ours_space = default.with_overrides(samples=TRIAL_CAP * trials, epoch_budget=budget, seed=seed)
                random_space = default.with_overrides(samples=trials, seed=seed, sampler="random", scheduler="none")
                ours_trials, ours = search(ours_space, Path(tmp), f"ours-{seed}")
                baseline_trials, baseline = search(random_space, Path(tmp), f"random-{seed}")
                target = final(baseline)
                per_seed.append({
                    "seed": seed, "target_hypervolume": target, "ours_final_hypervolume": final(ours),
                    "ours_seconds": time_to(ours, target), "baseline_seconds": time_to(baseline, target),
                    "ours_trials": len(ours_trials), "ours_fully_trained": len(ours),
                    "baseline_trials": len(baseline_trials), "baseline_fully_trained": len(baseline),
                    "ours_epochs": int(ours_trials["epochs"].sum()),
                    "baseline_epochs": int(baseline_trials["epochs"].sum()),
                })
    finally:
        stop_ray()
    ratios = [speedup(s["ours_seconds"], s["baseline_seconds"], False) for s in per_seed]
    ours_s = statistics.median(s["ours_seconds"] for s in per_seed)
    base_s = statistics.median(s["baseline_seconds"] for s in per_seed)
    overshoot = default.search.max_concurrent * epochs  # trials running when the budget ran out may finish
    checks = {"baseline_front_nonempty": all(s["target_hypervolume"] > 0 for s in per_seed),
              "ours_front_nonempty": all(s["ours_fully_trained"] > 0 for s in per_seed),
              "baseline_trained_the_budget": all(s["baseline_epochs"] == budget for s in per_seed),
              "ours_stayed_within_the_budget": all(budget <= s["ours_epochs"] <= budget + overshoot
                                                   for s in per_seed)}
    mode = "QUICK MODE: a smaller budget, " if quick else ""
    workload = (f"{mode}{SPACE} space (digits, {epochs} epochs/trial), {budget} training epochs per search "
                f"(random: {trials} trials; ours: as many as the budget allows, at most {TRIAL_CAP * trials}), "
                f"seeds {seeds}; seconds from run start until the (val_error, params) hypervolume of fully "
                f"trained trials reaches the baseline's final one; ratio = median over seeds of baseline/ours; "
                f"ours: {default.search.sampler} + {default.search.scheduler}; baseline: random, no early stopping; "
                "per seed (trials, fully trained, epochs) ours vs random: "
                + "; ".join(f"{s['ours_trials']}/{s['ours_fully_trained']}/{s['ours_epochs']} vs "
                            f"{s['baseline_trials']}/{s['baseline_fully_trained']}/{s['baseline_epochs']}"
                            for s in per_seed)
                + "; final hypervolume ours/random per seed: "
                + ", ".join(f"{s['ours_final_hypervolume'] / s['target_hypervolume']:.4f}" for s in per_seed))
    return Row("search_efficiency", ours_s, base_s, "s to baseline final HV", statistics.median(ratios),
               f"{describe_device(torch.device('cpu'), threads)}; Ray, 1 CPU per trial", workload, checks,
               {"threads": threads, "epoch_budget": budget, "per_seed": per_seed, "ratios": ratios})
