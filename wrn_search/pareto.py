"""Pareto fronts, hypervolume and the one order of trials that early stopping and the sampler share.

Dominance follows Optuna's ``study.best_trials``: a trial dominates another if
it is no worse in every objective and better in one; only COMPLETE trials
compete (wrn-search sets no Optuna constraints: its budgets bound what is sampled).
:func:`pareto_front` lists each net once: trials of one net (one
``name``) that tie on every objective are one row, whose ``ties`` counts the others;
different nets that tie are all on the front.
:func:`promotion_order` (non-dominated rank, crowding distance, objectives, arrival)
decides who continues at an MO-ASHA rung and which trials TPE counts as good.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Worst value of a bounded objective, used as its hypervolume reference.
BOUNDED_REFERENCE = {"val_error": 1.0}
#: Unbounded objectives (params, MACs) are referenced at this factor times their largest value in the run.
COST_REFERENCE_FACTOR = 1.1

Point = tuple[float, ...]


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``points`` (n x d, minimised) that no other row dominates."""
    points = np.asarray(points, dtype=float)
    mask = np.ones(len(points), dtype=bool)
    for i, point in enumerate(points):
        mask[i] = not np.any(np.all(points <= point, axis=1) & np.any(points < point, axis=1))
    return mask


def non_dominated_ranks(points: Sequence[Point]) -> list[int]:
    """Front index of every point (0 = non-dominated); identical points share a front.

    One and two objectives (every rung of ASHA and MO-ASHA) take O(n log n); more peel fronts.
    """
    values = np.asarray(points, dtype=float).reshape(len(points), -1)
    if values.shape[1] == 1:
        return np.unique(values[:, 0], return_inverse=True)[1].reshape(-1).tolist()
    if values.shape[1] == 2:
        return _ranks_2d(values)
    ranks = np.zeros(len(values), dtype=int)
    remaining = np.arange(len(values))
    front = 0
    while remaining.size:
        on_front = non_dominated(values[remaining])
        ranks[remaining[on_front]] = front
        remaining = remaining[~on_front]
        front += 1
    return ranks.tolist()


def _ranks_2d(values: np.ndarray) -> list[int]:
    """Sweep by (x, y): a point's front is the first whose smallest y so far is above its y."""
    ranks = [0] * len(values)
    smallest_y: list[float] = []  # per front; non-decreasing from front to front
    previous, previous_rank = None, 0
    xs, ys = values[:, 0].tolist(), values[:, 1].tolist()  # Python floats: the loop runs per result at a rung
    for index in np.lexsort((values[:, 1], values[:, 0])).tolist():
        point = (xs[index], ys[index])
        if point == previous:
            ranks[index] = previous_rank
            continue
        front = bisect.bisect_right(smallest_y, point[1])
        if front == len(smallest_y):
            smallest_y.append(point[1])
        else:
            smallest_y[front] = point[1]
        ranks[index] = front
        previous, previous_rank = point, front
    return ranks


def crowding_distances(points: Sequence[Point], members: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member within its front; boundary points get infinity.

    Identical points share one distance, so duplicates tie instead of being ordered by index.
    """
    unique = sorted({tuple(points[i]) for i in members})
    distance = {point: 0.0 for point in unique}
    if len(unique) <= 2:
        return {i: math.inf for i in members}
    for objective in range(len(unique[0])):
        ordered = sorted(unique, key=lambda point: point[objective])
        low, high = ordered[0][objective], ordered[-1][objective]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, current, after in zip(ordered, ordered[1:], ordered[2:]):
            distance[current] += (after[objective] - before[objective]) / (high - low)
    return {i: distance[tuple(points[i])] for i in members}


def promotion_order(points: Sequence[Point]) -> list[int]:
    """Indices of ``points`` best first: non-dominated rank, larger crowding distance, then the objectives
    in order (error first), then arrival. A strict order, so ties never widen the promoted fraction."""
    ranks = non_dominated_ranks(points)
    fronts: dict[int, list[int]] = {}
    for index, rank in enumerate(ranks):
        fronts.setdefault(rank, []).append(index)
    crowding: dict[int, float] = {}
    for members in fronts.values():
        crowding.update(crowding_distances(points, members))
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i], *points[i], i))


def promotion_position(points: Sequence[Point], index: int) -> int:
    """``promotion_order(points).index(index)`` without ordering every point: the points of a lower
    non-dominated rank plus those of ``index``'s own front that come before it (crowding distance is
    needed in that front only). MO-ASHA asks this of each result at a rung of thousands of trials."""
    values = np.asarray(points, dtype=float).reshape(len(points), -1)
    if not np.isfinite(values).all():  # NaN and inf keys: keep sorted()'s own order
        return promotion_order(points).index(index)
    ranks = np.asarray(non_dominated_ranks(points))
    mine = ranks[index]
    members = np.flatnonzero(ranks == mine).tolist()
    crowding = crowding_distances(points, members)
    key = (-crowding[index], *points[index], index)
    return int((ranks < mine).sum()) + sum((-crowding[i], *points[i], i) < key for i in members)


def promotion_best(points: Sequence[Point], count: int) -> set[int]:
    """``set(promotion_order(points)[:count])`` without ordering every point: whole fronts of the lowest
    ranks, then the best of the front where the count ends (crowding distance is needed in that front only)."""
    if count <= 0:
        return set()
    values = np.asarray(points, dtype=float).reshape(len(points), -1)
    if count >= len(points):
        return set(range(len(points)))
    if not np.isfinite(values).all():  # NaN and inf keys: keep sorted()'s own order
        return set(promotion_order(points)[:count])
    ranks = np.asarray(non_dominated_ranks(points))
    by_rank = np.argsort(ranks, kind="stable")
    cut = ranks[by_rank[count - 1]]  # the front where the count ends
    best = set(np.flatnonzero(ranks < cut).tolist())
    members = np.flatnonzero(ranks == cut).tolist()
    crowding = crowding_distances(points, members)
    members.sort(key=lambda i: (-crowding[i], *points[i], i))
    return best | set(members[:count - len(best)])


def candidates(frame: pd.DataFrame, columns: Sequence[str], include_early_stopped: bool = False) -> pd.DataFrame:
    """Trials eligible for the front: COMPLETE (plus PRUNED if asked), with all ``columns`` known."""
    states = ["COMPLETE", "PRUNED"] if include_early_stopped else ["COMPLETE"]
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    keep = frame["state"].isin(states) & values.notna().all(axis=1)
    return frame[keep]


def pareto_front(
    frame: pd.DataFrame, columns: Sequence[str] = ("val_error", "params"), include_early_stopped: bool = False
) -> pd.DataFrame:
    """Non-dominated trials of ``frame`` over ``columns``, one row per net and point, sorted by the last
    column then the first.

    By default only trials trained to the full budget (state COMPLETE) compete. Trials of the same
    net (``name``) with the same values in ``columns`` (the sampler asked for a net twice, or two
    learning rates gave the same error) are one point: the row is the first of them (a COMPLETE one
    before one stopped early, then the lowest number) and its ``ties`` column counts the others.
    Params and MACs follow from the name, so over (val_error, params[, macs]) each net is listed
    once. Over the study's objectives the front is ``study.best_trials`` without those repeats.
    """
    columns = list(columns)
    pool = candidates(frame, columns, include_early_stopped)
    front = _one_row_per_point(pool[non_dominated(pool[columns].to_numpy(dtype=float))], columns)
    return front.sort_values(columns[::-1] + ["number"], kind="stable").reset_index(drop=True)


def _one_row_per_point(front: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The first trial of each (name, values) group, with ``ties`` = the group's other trials."""
    keys = ["name", *columns]
    ordered = front.assign(_stopped=front["state"] != "COMPLETE").sort_values(["_stopped", "number"], kind="stable")
    sizes = ordered.groupby(keys, sort=False, dropna=False)["number"].transform("size")
    ordered = ordered.assign(ties=(sizes - 1).astype(int))
    return ordered.drop_duplicates(keys).drop(columns="_stopped")


def reference_point(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[float, ...]:
    """1.0 for the error; 1.1 x the largest value in the run for a cost, so every trial counts (NaN if none)."""
    return tuple(
        BOUNDED_REFERENCE.get(column, COST_REFERENCE_FACTOR * pd.to_numeric(frame[column]).astype(float).max())
        for column in columns
    )


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """Exact volume dominated by ``points`` (minimised) and bounded by ``reference``; 1 to 3 objectives."""
    reference = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(reference[0] - points.min())
    if len(reference) == 2:
        return _hypervolume_2d(points, reference)
    if len(reference) == 3:
        # Slices between successive values of the third objective, each a 2-D problem.
        points = points[np.argsort(points[:, 2], kind="stable")]
        tops = np.append(points[1:, 2], reference[2])
        return float(sum(_hypervolume_2d(points[: i + 1, :2], reference[:2]) * (tops[i] - points[i, 2])
                         for i in range(len(points))))
    raise ValueError(f"hypervolume: supports 1 to 3 objectives, got {len(reference)}")


def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Sweep along x: each point's strip reaches the next x, as high as the best y seen so far."""
    points = points[np.lexsort((points[:, 1], points[:, 0]))]
    widths = np.diff(np.append(points[:, 0], reference[0]))
    heights = reference[1] - np.minimum.accumulate(points[:, 1])
    return float(np.sum(widths * heights))


def hypervolume_history(
    frame: pd.DataFrame, columns: Sequence[str], reference: Sequence[float] | None = None
) -> pd.DataFrame:
    """Hypervolume and best error after each COMPLETE trial, in order of finishing.

    ``hypervolume_fraction`` divides by the reference box's volume (the ideal point at 0 gives 1).
    """
    columns = list(columns)
    reference = reference_point(frame, columns) if reference is None else tuple(reference)
    pool = candidates(frame, columns).sort_values(["finished", "number"], kind="stable")
    points = pool[columns].to_numpy(dtype=float)
    volumes = [hypervolume(points[: i + 1], reference) for i in range(len(points))]
    return pd.DataFrame({
        "number": pool["number"].to_numpy(),
        "name": pool["name"].to_numpy(),
        "elapsed_seconds": pool["elapsed_seconds"].to_numpy(dtype=float),
        "hypervolume": volumes,
        "hypervolume_fraction": np.asarray(volumes) / float(np.prod(reference)) if len(volumes) else [],
        "best_val_error": pool["val_error"].astype(float).cummin().to_numpy(),
    })


@dataclass(frozen=True)
class FrontScale:
    """A hypervolume that can tell fronts apart: cost on a log axis, error against a realistic worst.

    The cost (params or MACs) is mapped to ``log(cost)`` normalised so that ``low`` is 0 and
    ``high`` is 1, referenced at ``cost_reference`` (1.1: the largest net still counts); the error
    is referenced at ``error_reference`` (e.g. the worst error of a fully trained config) instead
    of 1.0, which would make a single mediocre net score almost everything. Volumes are divided by
    the reference box, so a front scores in [0, 1).
    """

    low: float
    high: float
    error_reference: float
    cost_reference: float = COST_REFERENCE_FACTOR

    def points(self, errors: Sequence[float], costs: Sequence[float]) -> np.ndarray:
        span = math.log(self.high) - math.log(self.low) or 1.0
        x = (np.log(np.asarray(costs, dtype=float)) - math.log(self.low)) / span
        return np.column_stack([np.asarray(errors, dtype=float), x])

    def hypervolume(self, errors: Sequence[float], costs: Sequence[float]) -> float:
        reference = (self.error_reference, self.cost_reference)
        return hypervolume(self.points(errors, costs), reference) / (reference[0] * reference[1])
