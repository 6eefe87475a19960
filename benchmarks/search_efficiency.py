"""Search efficiency with real training: time to reach random search's final hypervolume on the quickstart.

Ours is the quickstart default (multi-objective TPE + Pareto-aware successive
halving); the baseline is the same space with ``sampler="random"`` and
``scheduler="none"``. Both get exactly the same compute: the baseline trains
``trials`` architectures fully, and ours may train as many epochs in all
(``search.epoch_budget``), spending what early stopping saves on more
architectures. Trials still running when ours spends its budget finish, so its
curve is cut where its epochs (from ``epochs.jsonl``, in time order) reach the
budget exactly: what it trained beyond the budget never counts. The hypervolume
is the simulated benchmark's (``pareto.FrontScale``): params on a log axis from
the space's smallest to its largest net, error referenced at the worst error of
a fully trained trial of either side in that seed. Which side runs first
alternates with the seed, so machine load drifting during a seed favours
neither. The simulated benchmark (``sim_efficiency``) is the statistically
sound comparison; this row checks it on real training.
"""

from __future__ import annotations

import statistics
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from wrn_search.pareto import FrontScale
from wrn_search.search.orchestrate import run_search
from wrn_search.spaces.space import SearchSpace, load_space

from .common import Row, describe_device, log, pin_threads, speedup, start_ray, stop_ray

SPACE = "quickstart"
#: Ours may start this many times the baseline's trials; the epoch budget ends it long before.
TRIAL_CAP = 10


def search(space: SearchSpace, directory: Path, name: str, epoch_budget: int) -> tuple[pd.DataFrame, float]:
    """One search's trials, and the seconds since it started at which its epochs reached ``epoch_budget``."""
    results = run_search(space, name=name, storage_path=str(directory), verbose=0)
    created = datetime.fromisoformat(results.manifest.created).timestamp()  # as elapsed_seconds counts
    times = results.curves["time"].sort_values().to_numpy() - created
    cutoff = float(times[min(epoch_budget, len(times)) - 1])
    return results.trials, cutoff


def history(trials: pd.DataFrame, cutoff: float, scale: FrontScale) -> list[tuple[float, float]]:
    """(seconds, hypervolume) after each fully trained trial finished by ``cutoff``."""
    done = trials[(trials["state"] == "COMPLETE") & (trials["elapsed_seconds"] <= cutoff)]
    done = done.sort_values(["elapsed_seconds", "number"], kind="stable")
    errors, params = done["val_error"].astype(float).tolist(), done["params"].astype(float).tolist()
    return [(float(t), scale.hypervolume(errors[: i + 1], params[: i + 1]))
            for i, t in enumerate(done["elapsed_seconds"])]


def time_to(curve: list[tuple[float, float]], target: float) -> float:
    """Seconds until the hypervolume first reaches ``target`` (inf if it never does)."""
    return next((t for t, volume in curve if volume >= target * (1 - 1e-12)), float("inf"))


def final(curve: list[tuple[float, float]]) -> float:
    return curve[-1][1] if curve else 0.0


def run(quick: bool = False, threads: int | None = None) -> Row:
    threads = pin_threads(threads)
    default = load_space(SPACE)
    trials = 8 if quick else default.search.samples
    seeds = [0, 1, 2]
    epochs = default.training.epochs
    budget = trials * epochs
    log(f"search_efficiency: {SPACE}, {budget} epochs ({trials} full trials), seeds {seeds}, "
        "ours vs random without early stopping")
    per_seed = []
    sizes = [default.cost(spec)[0] for spec in default.architectures()]
    start_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in seeds:
                sides = {"ours": default.with_overrides(samples=TRIAL_CAP * trials, epoch_budget=budget, seed=seed),
                         "random": default.with_overrides(samples=trials, seed=seed, sampler="random",
                                                          scheduler="none")}
                order = list(sides) if seed % 2 == 0 else list(sides)[::-1]
                runs = {side: search(sides[side], Path(tmp), f"{side}-{seed}", budget) for side in order}
                complete = pd.concat([trials[trials["state"] == "COMPLETE"] for trials, _ in runs.values()])
                scale = FrontScale(min(sizes), max(sizes), float(complete["val_error"].max()))
                ours, baseline = (history(*runs[side], scale) for side in ("ours", "random"))
                target = final(baseline)
                (ours_trials, ours_cutoff), (baseline_trials, _) = runs["ours"], runs["random"]
                per_seed.append({
                    "seed": seed, "first": order[0], "error_reference": scale.error_reference,
                    "target_hypervolume": target, "ours_final_hypervolume": final(ours),
                    "ours_seconds": time_to(ours, target), "baseline_seconds": time_to(baseline, target),
                    "ours_trials": len(ours_trials), "ours_fully_trained": len(ours),
                    "baseline_trials": len(baseline_trials), "baseline_fully_trained": len(baseline),
                    "ours_epochs": int(ours_trials["epochs"].sum()),
                    "ours_epochs_counted": budget, "ours_cutoff_seconds": ours_cutoff,
                    "baseline_epochs": int(baseline_trials["epochs"].sum()),
                })
    finally:
        stop_ray()
    ratios = [speedup(s["ours_seconds"], s["baseline_seconds"], False) for s in per_seed]
    ours_s = statistics.median(s["ours_seconds"] for s in per_seed)
    base_s = statistics.median(s["baseline_seconds"] for s in per_seed)
    checks = {"baseline_front_nonempty": all(s["target_hypervolume"] > 0 for s in per_seed),
              "ours_front_nonempty": all(s["ours_fully_trained"] > 0 for s in per_seed),
              "baseline_trained_the_budget": all(s["baseline_epochs"] == budget for s in per_seed),
              "ours_trained_at_least_the_budget": all(s["ours_epochs"] >= budget for s in per_seed),
              "each_side_ran_first_once": {s["first"] for s in per_seed} == {"ours", "random"}}
    mode = "QUICK MODE: a smaller budget, " if quick else ""
    workload = (f"{mode}{SPACE} space (digits, {epochs} epochs/trial), {budget} training epochs per search "
                f"(random: {trials} trials; ours: as many as the budget allows, at most {TRIAL_CAP * trials}), "
                f"seeds {seeds}, the side that runs first alternating; seconds from run start until the "
                f"normalised (val_error, log params) hypervolume of fully trained trials reaches the baseline's "
                f"final one, ours cut where its epochs reach the budget exactly; ratio = median over seeds of "
                f"baseline/ours; "
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
