"""Simulated search efficiency: time to random search's final hypervolume, many seeds, same simulated time.

Every method searches each shipped benchmark table (:data:`TABLES`, each with the ready space of
its name; environment variable ``WRN_BENCH_TABLE`` names one table or a .csv.gz path instead) with
4 asynchronous workers in :mod:`wrn_search.simulation.simulate`, on the same seeds. Simulation seed ``s``
seeds the method and replays table seed ``table_seed(table, s)``. A default is judged on every
table: one that wins on the table it was tuned on and loses on the next is not a default.

Time budget: every simulation ends exactly at ``T`` simulated seconds (``samples`` is huge, so
only ``T`` ends it), with ``T`` = (sum over every grid config of the replayed seed's
full-training seconds) / workers / 8: random search without early stopping fully trains about
1/8 of the grid. ``T`` depends on the table seed only, so it is the same for every method.

Figures: the hypervolume (``Table.scale()``: log params, error referenced at the table's worst
full-budget error) of the COMPLETE trials finished so far is a step function of simulated time.
The target of a seed is random search's hypervolume at ``T``; a run's time to target is the first
moment its hypervolume is within ``TOLERANCE`` of it (None: not reached by ``T``). Medians and
quartiles count not reached as +inf (reported as None in the details); the Wilcoxon signed-rank
tests (two-sided, ``zero_method="zsplit"``, paired by seed) count it as ``2 T``. Regret is
``1 - HV / HV_optimal`` of the replayed seed at T/32, 25%, 50% and 100% of ``T``.

Rows, per table: ours (the space's own tpe + moasha) against random search (both never repeat a
configuration), with the default's targets as checks (:func:`target_checks`), and against Syne
Tune's stock MOASHA (:mod:`benchmarks.syne_tune_moasha`, from the ``bench`` extra); the details
also report Syne Tune's MOASHA with our patch of its rank bug, labelled as such. Then one row over
all tables. The plots of median regret over time go to ``sim_efficiency-TABLE.html`` in
``$WRN_BENCH_OUT`` (default: the current directory).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import wilcoxon

from wrn_search.pareto import FrontScale
from wrn_search.simulation.simulate import FinishedTrial, Simulation, replay, table_seed
from wrn_search.simulation.table import Table, load_table
from wrn_search.spaces.schema import config_key
from wrn_search.spaces.space import SearchSpace, load_space
from wrn_search.training.recipe import CONTINUES

from .common import Row, log, speedup

#: The shipped tables, each replayed with the ready space of its name (``WRN_BENCH_TABLE`` names one table instead).
TABLES = ("digits-wrn", "digits-lr", "digits-deep")
WORKERS = 4
#: Random search without early stopping fully trains about 1/GRID_SHARE of the grid in the time budget.
GRID_SHARE = 8
#: Trials a method may ask for: more than any time budget allows, so only the budget ends a simulation.
SAMPLES = 1_000_000
SEEDS = {"quick": 10, "full": 30}
#: Hypervolumes this close count as equal (a dominated point can move the sum by an ulp).
TOLERANCE = 1e-12
FRACTIONS = (1 / 32, 0.25, 0.5, 1.0)
#: Targets of the default search on every table (issue-level targets, checked per table and over all).
TARGET_RATIO = 3.0
TARGET_P = 0.01
TARGET_REACHED = 28 / 30
MAX_REPEATED_SHARE = 0.02
PROCESSES = 2
NOT_INSTALLED = "syne-tune not installed (pip install -e '.[bench]')"


@dataclass(frozen=True)
class Method:
    """A searcher and scheduler: our own with ``overrides`` of the space, or Syne Tune's MOASHA."""

    name: str
    description: str
    overrides: dict = field(default_factory=dict)
    syne_tune: bool = False
    ranked: bool = False


METHODS = (
    Method("ours", "the space's defaults: multi-objective TPE + our MO-ASHA"),
    Method("random", "random search, no early stopping", {"sampler": "random", "scheduler": "none"}),
    Method("random_moasha", "random search + our MO-ASHA", {"sampler": "random", "scheduler": "moasha"}),
    Method("tpe", "multi-objective TPE, no early stopping", {"sampler": "tpe", "scheduler": "none"}),
    Method("nsga2", "NSGA-II, no early stopping (the space refuses NSGA-II with early stopping)",
           {"sampler": "nsga2", "scheduler": "none"}),
    Method("asha", "random search + ASHA on val_error (Syne Tune's ASHA baseline)",
           {"sampler": "random", "scheduler": "asha"}),
    Method("syne_tune_moasha", "Syne Tune 0.16's MOASHA, stock (random search + its MO successive halving)",
           syne_tune=True),
    Method("syne_tune_moasha_ranked", "Syne Tune's MOASHA with OUR PATCH of its rank bug (RankPriority), "
           "not stock Syne Tune", syne_tune=True, ranked=True),
)


@dataclass(frozen=True)
class Run:
    """One simulation, reduced to its hypervolume steps and its trial counts."""

    method: str
    seed: int
    table_seed: int
    time_budget: float
    optimum: float
    #: (simulated seconds, hypervolume) where the hypervolume rose, in time order.
    steps: tuple[tuple[float, float], ...]
    trials: int
    complete: int
    pruned: int
    failed: int
    epochs: int
    #: Trials that trained a configuration from epoch 1 that an earlier trial of the run had (None: not counted).
    repeats: int | None = None

    def hypervolume_at(self, seconds: float) -> float:
        return max((hv for time, hv in self.steps if time <= seconds), default=0.0)

    @property
    def final(self) -> float:
        return self.hypervolume_at(self.time_budget)

    def time_to(self, target: float) -> float | None:
        """First simulated second the hypervolume reaches ``target`` (0 for an empty target), else None."""
        if target <= TOLERANCE:
            return 0.0
        return next((time for time, hv in self.steps if hv >= target - TOLERANCE), None)

    def regret(self, seconds: float) -> float:
        """1 - HV/HV_optimal at ``seconds``; clipped at 0 where rounding overshoots the optimum."""
        return max(0.0, 1.0 - self.hypervolume_at(seconds) / self.optimum)

    def regret_at(self, fraction: float) -> float:
        return self.regret(fraction * self.time_budget)


def time_budget(space: SearchSpace, table: Table, seed: int, workers: int = WORKERS) -> float:
    """Simulated seconds for which random search without early stopping trains ~1/GRID_SHARE of the grid."""
    total = sum(float(table.curve(config, seed).epoch_seconds.sum()) for config in space.grid_configs())
    return total / workers / GRID_SHARE


def hypervolume_steps(finished: list[FinishedTrial], scale: FrontScale) -> tuple[tuple[float, float], ...]:
    """The hypervolume of the COMPLETE trials after each one finishes, where it rises."""
    complete = sorted((t for t in finished if t.state == "COMPLETE"), key=lambda t: (t.finished, t.number))
    errors: list[float] = []
    params: list[int] = []
    steps: list[tuple[float, float]] = []
    for trial in complete:
        errors.append(float(trial.val_error))
        params.append(trial.params)
        volume = scale.hypervolume(errors, params)
        if volume > (steps[-1][1] if steps else 0.0) + TOLERANCE:
            steps.append((trial.finished, volume))
    return tuple(steps)


def simulate_run(method: Method, seed: int, space: SearchSpace, table: Table, workers: int = WORKERS) -> Run:
    """One method's simulation with ``seed``, cut at the seed's time budget."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    replayed = table_seed(table, seed)
    budget = time_budget(space, table, replayed, workers)
    if method.syne_tune:
        from .syne_tune_moasha import syne_tune_moasha

        table.check_covers(space)
        searcher, scheduler = syne_tune_moasha(space, seed, method.ranked)
        finished = Simulation(searcher, scheduler, table, replayed, workers, budget).run()
        repeats = None
    else:
        with tempfile.TemporaryDirectory() as run_dir:
            searched = space.with_overrides(samples=SAMPLES, seed=seed, **method.overrides)
            simulation = replay(searched, table, workers, Path(run_dir), f"{method.name}-{seed}", budget)
            finished = simulation.finished
            repeats = repeated_trials(simulation.searcher.study.get_trials(deepcopy=False), searched)
    states = [trial.state for trial in finished]
    return Run(method.name, seed, replayed, budget, table.optimal_hypervolume(replayed),
               hypervolume_steps(finished, table.scale()), len(finished), states.count("COMPLETE"),
               states.count("PRUNED"), states.count("FAIL"), sum(trial.trained_epochs for trial in finished), repeats)


def repeated_trials(trials: list[optuna.trial.FrozenTrial], space: SearchSpace) -> int:
    """Trials that trained a configuration from epoch 1 again (a trial continuing one stopped early does not)."""
    seen: set[tuple] = set()
    repeats = 0
    for trial in trials:
        key = config_key({"name": trial.user_attrs["name"], **trial.params}, tuple(space.hyperparameters))
        repeats += key in seen and CONTINUES not in trial.user_attrs
        seen.add(key)
    return repeats


@lru_cache(maxsize=4)
def _load(source: str) -> Table:
    return load_table(source)


def _job(method: Method, seed: int, space: SearchSpace, source: str, workers: int) -> Run:
    """A pool worker's simulation: the table is loaded once per process, by its name or path."""
    return simulate_run(method, seed, space, _load(source), workers)


def unavailable(method: Method, space: SearchSpace) -> str | None:
    """Why ``method`` cannot run here (Syne Tune not installed, or a combination the space refuses), or None."""
    if method.syne_tune:
        try:
            import syne_tune  # noqa: F401
        except ImportError:
            return NOT_INSTALLED
        return None
    try:
        space.with_overrides(**method.overrides)
    except ValueError as error:
        return f"the space refuses it: {error}"
    return None


@dataclass
class Evaluation:
    """Every method's runs, by method then in seed order, and why the others could not run."""

    table: str
    seeds: list[int]
    workers: int
    methods: tuple[Method, ...]
    runs: dict[str, list[Run]]
    missing: dict[str, str]

    def targets(self) -> list[float]:
        """Per seed: random search's final hypervolume."""
        return [run.final for run in self.runs["random"]]

    def times_to_target(self, method: str) -> list[float | None]:
        return [run.time_to(target) for run, target in zip(self.runs[method], self.targets())]

    def ranked_times(self, method: str) -> list[float]:
        """Time to target per seed with not reached as +inf, for medians and quartiles."""
        return [math.inf if time is None else time for time in self.times_to_target(method)]


def evaluate(space: SearchSpace, table: Table, seeds: list[int], methods: tuple[Method, ...] = METHODS,
             workers: int = WORKERS, processes: int = PROCESSES) -> Evaluation:
    """Simulate every method on every seed; ``processes`` > 1 spreads the (method, seed) jobs over a pool.

    Each job is seeded on its own, so the results do not depend on which process ran it or when.
    """
    if not {"ours", "random"} <= {method.name for method in methods}:
        raise ValueError("methods: include ours (what the figures compare) and random (it sets the target)")
    missing = {method.name: reason for method in methods if (reason := unavailable(method, space))}
    jobs = [(method, seed) for method in methods if method.name not in missing for seed in seeds]
    if processes > 1:
        # spawn: workers start clean of what ran before in this process (Ray, torch's threads), which fork copies
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_job, [method for method, _ in jobs], [seed for _, seed in jobs],
                                    repeat(space), repeat(table.source), repeat(workers)))
    else:
        results = [simulate_run(method, seed, space, table, workers) for method, seed in jobs]
    runs: dict[str, list[Run]] = {}
    for run in results:
        runs.setdefault(run.method, []).append(run)
    return Evaluation(table.source, list(seeds), workers, tuple(methods), runs, missing)


def label(fraction: float) -> str:
    """A fraction of the time budget as a percentage: 3.125%, 25%, 100%."""
    return f"{fraction * 100:g}%"


def quantile(values: list[float], q: float) -> float:
    """Linearly interpolated quantile where a +inf neighbour gives +inf (numpy would give nan)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float]) -> dict[str, float | None]:
    """Median and quartiles; +inf (not reached) is written as None."""
    return {name: _finite(quantile(values, q)) for name, q in (("median", 0.5), ("q25", 0.25), ("q75", 0.75))}


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def paired_p(ours: list[float], theirs: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zsplit); 1.0 when every pair ties (scipy gives nan)."""
    if all(a == b for a, b in zip(ours, theirs)):
        return 1.0
    return float(wilcoxon(ours, theirs, zero_method="zsplit").pvalue)


def penalised_times(evaluation: Evaluation, method: str) -> list[float]:
    """Time to target per seed, not reached counted as twice the budget (for the signed-rank test)."""
    return [2 * run.time_budget if time is None else time
            for run, time in zip(evaluation.runs[method], evaluation.times_to_target(method))]


def method_figures(evaluation: Evaluation, method: Method) -> dict:
    """One method's medians, quartiles, share of seeds reaching the target and p-values against ours."""
    runs = evaluation.runs[method.name]
    times = evaluation.times_to_target(method.name)
    figures = {
        "description": method.description,
        "time_to_target_s": spread(evaluation.ranked_times(method.name)),
        "reached_fraction": sum(t is not None for t in times) / len(times),
        "not_reached": sum(t is None for t in times),
        "regret": {label(fraction): spread([run.regret_at(fraction) for run in runs]) for fraction in FRACTIONS},
        "median_trials": quantile([run.trials for run in runs], 0.5),
        "median_complete_trials": quantile([run.complete for run in runs], 0.5),
        "median_epochs": quantile([run.epochs for run in runs], 0.5),
        "repeated_share": (None if any(run.repeats is None for run in runs)
                           else sum(run.repeats for run in runs) / max(1, sum(run.trials for run in runs))),
    }
    if method.name != "ours":
        ours = evaluation.runs["ours"]
        figures["p_vs_ours_time_to_target"] = paired_p(penalised_times(evaluation, "ours"),
                                                       penalised_times(evaluation, method.name))
        figures["p_vs_ours_final_regret"] = paired_p([run.regret_at(1.0) for run in ours],
                                                     [run.regret_at(1.0) for run in runs])
    return figures


def per_seed(evaluation: Evaluation, method: str) -> list[dict]:
    """The raw numbers of each of a method's runs."""
    return [{"seed": run.seed, "table_seed": run.table_seed, "time_budget_s": run.time_budget, "target": target,
             "time_to_target_s": time, "final_hypervolume": run.final, "optimal_hypervolume": run.optimum,
             **{f"regret_{fraction:.0%}": run.regret_at(fraction) for fraction in FRACTIONS},
             "trials": run.trials, "complete": run.complete, "pruned": run.pruned, "failed": run.failed,
             "epochs": run.epochs, "repeats": run.repeats}
            for run, target, time in zip(evaluation.runs[method], evaluation.targets(),
                                         evaluation.times_to_target(method))]


def consistency_checks(evaluation: Evaluation) -> dict[str, bool]:
    """Checks for both rows: every method that could run (the rest are in ``missing``) ran every seed, and all
    replayed the same table seeds with the same budgets."""
    ran = [evaluation.runs.get(method.name, []) for method in evaluation.methods
           if method.name not in evaluation.missing]
    reference = [(run.seed, run.table_seed, run.time_budget) for run in evaluation.runs["ours"]]
    return {
        "every_available_method_ran_every_seed": all([run.seed for run in runs] == evaluation.seeds for runs in ran),
        "same_seeds_for_all_methods": all([(run.seed, run.table_seed, run.time_budget) for run in runs] == reference
                                          for runs in ran),
    }


def median_time(evaluation: Evaluation, method: str) -> float:
    """Median time to target over seeds, +inf when fewer than half reach it."""
    return quantile(evaluation.ranked_times(method), 0.5)


def ratio(ours: float, baseline: float) -> float:
    """baseline / ours; 1.0 when neither reached the target in the median."""
    return 1.0 if math.isinf(ours) and math.isinf(baseline) else speedup(ours, baseline, higher_is_better=False)


def faster(figures: dict, ours: float, baseline: float) -> bool:
    """Ours reaches the target sooner in the median, and the two-sided signed-rank test says it is no accident."""
    return ratio(ours, baseline) > 1 and figures["p_vs_ours_time_to_target"] < 0.05


def workload(evaluation: Evaluation, quick: bool) -> str:
    budgets = sorted({run.time_budget for run in evaluation.runs["random"]})
    return (f"{'QUICK MODE: ' if quick else ''}{len(evaluation.seeds)} seeds (the same for every method), "
            f"{evaluation.workers} simulated workers, T = grid's full-training seconds / {evaluation.workers} / "
            f"{GRID_SHARE} = {budgets[0]:,.0f}-{budgets[-1]:,.0f} simulated s per table seed; target: random "
            f"search's final hypervolume of the seed; median over seeds, not reached = +inf; methods: "
            + ", ".join(method.name for method in evaluation.methods if method.name not in evaluation.missing)
            + "".join(f"; not run: {name} ({reason})" for name, reason in evaluation.missing.items()))


def rows(evaluation: Evaluation, quick: bool, plot: Path | None) -> list[Row]:
    """The row against random search (every method in its details) and the row against stock Syne Tune MOASHA."""
    ran = [method for method in evaluation.methods if method.name not in evaluation.missing]
    figures = {method.name: method_figures(evaluation, method) for method in ran}
    common = {"table": evaluation.table, "workers": evaluation.workers, "seeds": evaluation.seeds,
              "time_budget_s": {run.seed: run.time_budget for run in evaluation.runs["random"]},
              "time_budget_rule": f"sum of the replayed seed's full-training seconds over the grid / workers / "
                                  f"{GRID_SHARE}",
              "not_reached": "None in per-seed lists and quantiles; counted as +inf in medians and quartiles and "
                             "as 2 T in the Wilcoxon tests",
              "plot": str(plot) if plot else None, "missing": evaluation.missing}
    consistency = consistency_checks(evaluation)
    device = f"simulated: {evaluation.table} table, {evaluation.workers} workers"
    ours = median_time(evaluation, "ours")
    random = median_time(evaluation, "random")
    versus_random = Row(
        f"sim_efficiency_vs_random[{table_name(evaluation)}]", ours, random,
        "simulated s to random's final hypervolume", ratio(ours, random), device, workload(evaluation, quick),
        {**consistency, "ours_faster_than_random_p_below_0.05": faster(figures["random"], ours, random),
         **target_checks(evaluation, figures)},
        {**common, "methods": figures, "per_seed": {name: per_seed(evaluation, name) for name in figures}})
    return [versus_random, versus_syne_tune(evaluation, quick, figures, common, consistency, device)]


def table_name(evaluation: Evaluation) -> str:
    """The table's name without folder or suffix: what the rows are labelled with."""
    return Path(evaluation.table).name.split(".")[0]


def target_checks(evaluation: Evaluation, figures: dict) -> dict[str, bool]:
    """The default search's targets on one table: sooner than every baseline, as often, as early, no repeats."""
    ours = median_time(evaluation, "ours")
    checks = {
        f"ratio_at_least_{TARGET_RATIO:g}": ratio(ours, median_time(evaluation, "random")) >= TARGET_RATIO,
        f"p_below_{TARGET_P:g}": figures["random"]["p_vs_ours_time_to_target"] < TARGET_P,
        f"reached_in_at_least_{TARGET_REACHED:.0%}_of_seeds": figures["ours"]["reached_fraction"] >= TARGET_REACHED,
        "regret_at_25%_no_worse_than_tpe": "tpe" not in figures or (
            figures["ours"]["regret"]["25%"]["median"] <= figures["tpe"]["regret"]["25%"]["median"]),
        # At T/32 no method has a trial trained to the end on the shipped tables (regret 1 for all): "ahead" there
        # is not measurable by the front of finished trials, so the check is that ours is not behind.
        "not_behind_random_at_T/32": (figures["ours"]["regret"][label(1 / 32)]["median"]
                                      <= figures["random"]["regret"][label(1 / 32)]["median"]),
        f"repeated_configurations_at_most_{MAX_REPEATED_SHARE:.0%}": (
            figures["ours"]["repeated_share"] is not None
            and figures["ours"]["repeated_share"] <= MAX_REPEATED_SHARE),
    }
    for name in ("random_moasha", "tpe", "syne_tune_moasha_ranked"):
        if name in figures:
            checks[f"sooner_than_{name}"] = ours < median_time(evaluation, name)
    return checks


def versus_syne_tune(evaluation: Evaluation, quick: bool, figures: dict, common: dict, consistency: dict,
                     device: str) -> Row:
    """Ours against stock Syne Tune MOASHA; its patched variant only in the details, labelled."""
    ours = median_time(evaluation, "ours")
    missing = evaluation.missing.get("syne_tune_moasha",
                                     None if "syne_tune_moasha" in evaluation.runs else "not among the methods run")
    theirs = math.nan if missing else median_time(evaluation, "syne_tune_moasha")
    names = [name for name in ("ours", "syne_tune_moasha", "syne_tune_moasha_ranked") if name in figures]
    details = {**common, "syne_tune": missing or _syne_tune_version(),
               "patched": "syne_tune_moasha_ranked is OUR PATCH of Syne Tune's MOASHA (ranks instead of an argsort "
                          "order in its non-dominated priority), not stock Syne Tune",
               "methods": {name: figures[name] for name in names},
               "per_seed": {name: per_seed(evaluation, name) for name in names}}
    checks = {"syne_tune_moasha_ran": missing is None, **consistency,
              "ours_faster_than_syne_tune_moasha_p_below_0.05":
                  not missing and faster(figures["syne_tune_moasha"], ours, theirs)}
    return Row(f"sim_efficiency_vs_syne_tune_moasha[{table_name(evaluation)}]", ours, theirs,
               "simulated s to random's final hypervolume",
               math.nan if missing else ratio(ours, theirs), device, workload(evaluation, quick), checks, details)


def _syne_tune_version() -> str:
    from importlib.metadata import version

    return f"syne-tune {version('syne-tune')}"


def median_regret_curves(evaluation: Evaluation, points: int = 200) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulated seconds and each method's median regret there; past a run's budget its final regret holds."""
    end = max(run.time_budget for runs in evaluation.runs.values() for run in runs)
    seconds = np.linspace(0.0, end, points)
    curves = {name: np.median([[run.regret(t) for t in seconds] for run in runs], axis=0)
              for name, runs in evaluation.runs.items()}
    return seconds, curves


def write_plot(evaluation: Evaluation, path: Path) -> Path:
    """A plotly page with one line of median regret per method (log y when every median is above 0)."""
    import plotly.graph_objects as go

    seconds, curves = median_regret_curves(evaluation)
    figure = go.Figure([go.Scatter(x=seconds, y=regret, mode="lines", name=name) for name, regret in curves.items()])
    positive = all(np.all(regret > 0) for regret in curves.values())
    figure.update_layout(
        title=f"Median regret (1 - HV/HV optimal) over {len(evaluation.seeds)} seeds, {evaluation.table} table, "
              f"{evaluation.workers} workers",
        xaxis_title="simulated seconds", yaxis_title="median regret", yaxis_type="log" if positive else "linear")
    figure.write_html(path, include_plotlyjs="cdn")  # 50 kB instead of 4.8 MB; plotly.js from its CDN
    return path


def run(quick: bool = False, threads: int | None = None) -> list[Row]:
    """Both rows per shipped table, then the row over all tables; ``threads`` is unused (no training here: the
    simulator replays the tables). ``WRN_BENCH_TABLE`` (a name or a path) runs one table with the space of its
    stem's name."""
    names = (os.environ["WRN_BENCH_TABLE"],) if os.environ.get("WRN_BENCH_TABLE") else TABLES
    seeds = list(range(SEEDS["quick" if quick else "full"]))
    out = Path(os.environ.get("WRN_BENCH_OUT", "."))
    table_rows: list[Row] = []
    for name in names:
        table = load_table(name)
        log(f"sim_efficiency: {table.source} table, {len(seeds)} seeds x {len(METHODS)} methods, "
            f"{PROCESSES} processes")
        evaluation = evaluate(load_space(Path(name).name.split(".")[0]), table, seeds)
        for method, reason in evaluation.missing.items():
            log(f"sim_efficiency: {method} skipped: {reason}")
        plot = write_plot(evaluation, out / f"sim_efficiency-{table_name(evaluation)}.html")
        log(f"sim_efficiency: plot in {plot}")
        table_rows.extend(rows(evaluation, quick, plot))
    return [*table_rows, over_all_tables(table_rows, quick)]


def over_all_tables(table_rows: list[Row], quick: bool) -> Row:
    """Ours against random over every table: the geometric mean of the per-table ratios (the smallest in the
    details), and every target check held on every table."""
    versus_random = [row for row in table_rows if row.name.startswith("sim_efficiency_vs_random")]
    ratios = [row.ratio for row in versus_random]
    geometric = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if all(r > 0 for r in ratios) else 0.0
    names = sorted({name for row in versus_random for name in row.checks})
    checks = {f"{name}_on_every_table": all(row.checks.get(name, False) for row in versus_random) for name in names}
    return Row("sim_efficiency_all_tables", geometric, 1.0, "geometric mean of the per-table ratios to random",
               geometric, "simulated: " + ", ".join(row.details["table"] for row in versus_random),
               f"{'QUICK MODE: ' if quick else ''}{len(versus_random)} tables, the per-table rows' workloads", checks,
               {"ratios": {row.name: row.ratio for row in versus_random}, "smallest_ratio": min(ratios)})
