"""Warm start on the simulator: a full-space search started from an earlier sub-space search, against a cold one.

Per shipped table (:data:`benchmarks.sim_efficiency.TABLES`, each with the ready space of its name) and seed,
with 4 workers and ``sim_efficiency``'s time budget ``T`` of the full space:

- the **source**: the default search (TPE + MO-ASHA) of a sub-space for ``T``, written as a simulated run.
  Its cost is NOT counted in the figures (the question is what an earlier run is worth to the next one).
  Good guide: the nets with at most the median params of the space's nets (a lower params budget, what a
  user searches first). Bad guide: the largest quarter of the nets only (a region the low end of the
  front is not in).
- **cold**: the default search of the full space for ``T``;
- **warm**: the same search warm-started from the source (``replay(..., warm_start=...)``); its reused
  COMPLETE trials count at time 0.

Target of a seed: random search's hypervolume at ``T`` (as in ``sim_efficiency``). Figures: the median
time to target (not reached as +inf) of cold and warm, their ratio (cold / warm, > 1: warm sooner), the
seeds reaching it, and the median final regret. Checks: the good guide reaches the target at least
:data:`TARGET_RATIO` times sooner than cold on every table; the bad guide's median final regret and median
time to target are no worse than cold's.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import optuna

from wrn_search.search.warmstart import WarmStart
from wrn_search.simulation.simulate import FinishedTrial, replay, simulate, table_seed
from wrn_search.spaces.space import SearchSpace, load_space, parse_space

from .common import Row, log
from .sim_efficiency import (
    METHODS,
    PROCESSES,
    SAMPLES,
    SEEDS,
    TABLES,
    WORKERS,
    Run,
    _load,
    hypervolume_steps,
    quantile,
    simulate_run,
    spread,
    time_budget,
)

#: The good guide must reach the target this many times sooner than a cold search.
TARGET_RATIO = 2.0
#: Sub-spaces of a table's space, by the params quantile of its nets: (min quantile, max quantile).
GUIDES = {"good": (None, 0.5), "bad": (0.75, None)}


def sub_space(space: SearchSpace, low: float | None, high: float | None) -> SearchSpace:
    """``space`` with a params budget keeping the nets between the ``low`` and ``high`` quantiles of params."""
    params = sorted(space.cost(spec)[0] for spec in space.architectures())
    document = space.to_dict()
    if low is not None:
        document["budget"]["min_params"] = params[math.floor(low * (len(params) - 1))]
    if high is not None:
        document["budget"]["max_params"] = params[math.floor(high * (len(params) - 1))]
    return parse_space(document, space.source)


def warm_run(name: str, seed: int, space: SearchSpace, table, source: Path, workers: int = WORKERS) -> Run:
    """The default search of ``space`` warm-started from the run ``source``, cut at the seed's time budget."""
    replayed = table_seed(table, seed)
    budget = time_budget(space, table, replayed, workers)
    searched = space.with_overrides(samples=SAMPLES, seed=seed)
    with tempfile.TemporaryDirectory() as run_dir:
        warm = WarmStart.plan(searched, [source], Path(run_dir), table=table.source)
        simulation = replay(searched, table, workers, Path(run_dir), f"{name}-{seed}", budget, warm_start=warm)
    reused = [FinishedTrial(number, trial.user_attrs["name"], trial.user_attrs["params"], trial.user_attrs["macs"],
                            "COMPLETE", trial.values[0], trial.epochs, 0.0, 0.0)
              for number, trial in enumerate(warm.trials) if trial.values is not None]
    finished = simulation.finished
    states = [trial.state for trial in finished]
    return Run(name, seed, replayed, budget, table.optimal_hypervolume(replayed),
               hypervolume_steps(reused + finished, table.scale()), len(finished), states.count("COMPLETE"),
               states.count("PRUNED"), states.count("FAIL"), sum(trial.trained_epochs for trial in finished))


def seed_job(table_name: str, seed: int) -> dict[str, Run]:
    """Every run of one table and seed: random (the target), cold, and warm from each guide."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = _load(table_name)
    space = load_space(Path(table_name).name.split(".")[0])
    methods = {method.name: method for method in METHODS}
    runs = {name: simulate_run(methods[name], seed, space, table) for name in ("random", "ours")}
    runs["cold"] = runs.pop("ours")
    replayed = table_seed(table, seed)
    with tempfile.TemporaryDirectory() as directory:
        for guide, (low, high) in GUIDES.items():
            source_space = sub_space(space, low, high).with_overrides(samples=SAMPLES, seed=seed)
            budget = time_budget(space, table, replayed)
            source = simulate(source_space, table, WORKERS, time_budget=budget, name=guide,
                              storage_path=directory).run_dir
            runs[guide] = warm_run(guide, seed, space, table, source)
    return runs


def evaluate(table_name: str, seeds: list[int]) -> list[dict[str, Run]]:
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(seed_job, [table_name] * len(seeds), seeds))


def times_to(per_seed: list[dict[str, Run]], name: str, target: str) -> list[float]:
    """Per seed: when run ``name`` reached the final hypervolume of run ``target`` (+inf: not by T)."""
    times = [runs[name].time_to(runs[target].final) for runs in per_seed]
    return [math.inf if time is None else time for time in times]


def figures(per_seed: list[dict[str, Run]], name: str) -> dict:
    """Time to random's final front (the target), to the cold search's final front, and the final regret."""
    ranked = times_to(per_seed, name, "random")
    return {"time_to_target_s": spread(ranked), "reached": sum(math.isfinite(time) for time in ranked),
            "time_to_cold_final_s": spread(times_to(per_seed, name, "cold")),
            "reached_cold_final": sum(math.isfinite(time) for time in times_to(per_seed, name, "cold")),
            "final_regret": spread([runs[name].regret_at(1.0) for runs in per_seed]),
            "median_trials": quantile([runs[name].trials for runs in per_seed], 0.5),
            "median_epochs": quantile([runs[name].epochs for runs in per_seed], 0.5)}


def _median(value: float | None) -> float:
    return math.inf if value is None else value


def table_row(table_name: str, per_seed: list[dict[str, Run]], quick: bool) -> Row:
    found = {name: figures(per_seed, name) for name in ("cold", *GUIDES)}
    cold = _median(found["cold"]["time_to_target_s"]["median"])
    good = _median(found["good"]["time_to_target_s"]["median"])
    bad = _median(found["bad"]["time_to_target_s"]["median"])
    ratio = cold / good if good > 0 else math.inf
    checks = {
        f"good_guide_{TARGET_RATIO:g}x_sooner": ratio >= TARGET_RATIO,
        "bad_guide_final_regret_no_worse": (found["bad"]["final_regret"]["median"]
                                            <= found["cold"]["final_regret"]["median"] + 1e-12),
        "bad_guide_time_to_target_no_worse": bad <= cold,
    }
    seeds = len(per_seed)
    return Row(f"warm_start_{Path(table_name).name.split('.')[0]}", good, cold,
               "median simulated s to random's final front (warm from the lower-params half vs cold)", ratio,
               f"simulated: {table_name}",
               f"{'QUICK MODE: ' if quick else ''}{seeds} seeds, {WORKERS} workers, "
               "each run cut at sim_efficiency's T; "
               "the source run's own cost (a sub-space search for T) is not counted", checks,
               {"table": table_name, "guides": {"good": "nets with at most the median params",
                                                "bad": "the largest quarter of the nets only"}, **found,
                "bad_over_cold_time_ratio": cold / bad if bad > 0 else math.inf})


def run(quick: bool = False, threads: int | None = None) -> list[Row]:
    """One row per shipped table; ``threads`` is unused (the simulator trains nothing)."""
    seeds = list(range(SEEDS["quick" if quick else "full"]))
    rows = []
    for table_name in TABLES:
        log(f"warm_start: {table_name}, {len(seeds)} seeds, {PROCESSES} processes")
        rows.append(table_row(table_name, evaluate(table_name, seeds), quick))
    return rows


if __name__ == "__main__":
    import json
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(replace(row, details={}).to_dict()), json.dumps(row.details, indent=1), sep="\n")
