"""Budgets: what a search may spend (:class:`TrialBudget`), and the parameter and MAC bounds of its nets
(:class:`CostBounds`) with the widen factors that meet them, solved in closed form.

For a fixed block type and blocks per group N, the cost model is a quadratic in
the widen factor k once channel counts are left unrounded. :func:`widen_factor_span`
solves that quadratic for the budget's bounds and then moves each root to the
exact boundary on the grid of allowed k with exact cost-model checks (rounded
channels make the quadratic approximate for fractional k). The search space
offers the sampler only that span, so no trial is spent on an over-budget net
and nothing is rejection-sampled.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wrn_search.network.spec import BASE_WIDTHS, count_macs, count_params, group_widths
from wrn_search.training.data import DatasetInfo

#: A cost measure: (blocks per group, group widths, kernels) -> parameters or MACs.
Measure = Callable[[int, tuple, tuple], float]


@dataclass(frozen=True)
class CostBounds:
    """Bounds on a net's parameters and per-image MACs; ``None`` leaves a bound open. Bounds are inclusive."""

    max_params: int | None = None
    min_params: int | None = None
    max_macs: int | None = None

    def admits(self, params: int, macs: int) -> bool:
        return (
            (self.max_params is None or params <= self.max_params)
            and (self.min_params is None or params >= self.min_params)
            and (self.max_macs is None or macs <= self.max_macs)
        )

    def describe(self) -> str:
        bounds = [f"{key}={value:,}" for key, value in vars(self).items() if value is not None]
        return ", ".join(bounds) or "none"


@dataclass(frozen=True)
class TrialBudget:
    """What a search may spend: ``samples`` trials, and ``epoch_budget`` training epochs of all trials (None:
    unlimited). The searcher stops asking once either is spent; running trials finish, so the epochs may overshoot.

    The one place that decides it, for the searcher, ``status``'s "what would resume do" and the progress line.
    """

    samples: int
    epoch_budget: int | None = None

    def new_trials(self, asked: int, epochs_spent: int) -> int:
        """How many more trials may be asked, ``asked`` having been and ``epochs_spent`` trained."""
        if self.epoch_budget is not None and epochs_spent >= self.epoch_budget:
            return 0
        return max(0, self.samples - asked)

    def epochs_left(self, full_epochs: int, epochs_spent: int, forgone: int = 0) -> int:
        """Epochs still to train at most: every trial at ``full_epochs``, less those spent and those ``forgone``
        by trials that ended early, capped by the epoch budget."""
        left = self.samples * full_epochs - epochs_spent - forgone
        if self.epoch_budget is not None:
            left = min(left, self.epoch_budget - epochs_spent)
        return max(left, 0)


@dataclass(frozen=True)
class CostModel:
    """The closed-form cost model at one dataset's class count, input channels and input size."""

    num_classes: int
    in_channels: int
    input_size: tuple[int, int]

    @classmethod
    def for_dataset(cls, info: DatasetInfo) -> CostModel:
        return cls(info.num_classes, info.in_channels, info.input_size)

    def params(self, n: int, widths: tuple, kernels: tuple[int, ...]) -> float:
        return count_params(n, widths, kernels, self.num_classes, self.in_channels)

    def macs(self, n: int, widths: tuple, kernels: tuple[int, ...]) -> float:
        return count_macs(n, widths, kernels, *self.input_size, self.num_classes, self.in_channels)

    def cost(self, n: int, widen_factor: float, kernels: tuple[int, ...]) -> tuple[int, int]:
        """Exact (params, MACs) of ``WRNSpec(n, widen_factor, kernels)``."""
        widths = group_widths(widen_factor)
        return int(self.params(n, widths, kernels)), int(self.macs(n, widths, kernels))


def widen_factor_span(
    model: CostModel, budget: CostBounds, n: int, kernels: tuple[int, ...], widen_factors: Sequence[float]
) -> tuple[int, int] | None:
    """Indices ``(lo, hi)`` into the sorted ``widen_factors`` whose nets all meet ``budget``; ``None`` if none does.

    Parameters and MACs grow with k, so the feasible widen_factors are one run of the grid.
    The exception: at k = 1 the group-1 shortcut disappears (round(16k) reaches 16),
    which can make a net of 1x1-conv blocks cheaper than slightly narrower ones. A span
    reaching below k = 1 is therefore checked point by point and, when k = 1 fits, is the
    run through k = 1 (so from k = 1 on it is exact), else the longest run that fits.
    """
    hi = len(widen_factors) - 1
    for measure, limit in ((model.params, budget.max_params), (model.macs, budget.max_macs)):
        if limit is not None:
            hi = min(hi, _largest_within(measure, limit, n, kernels, widen_factors))
    lo = 0
    if budget.min_params is not None:
        lo = _largest_within(model.params, budget.min_params - 1, n, kernels, widen_factors) + 1
    if lo > hi:
        return None
    if widen_factors[lo] >= 1:
        return lo, hi
    flags = [budget.admits(*model.cost(n, widen_factors[i], kernels)) for i in range(lo, hi + 1)]
    one = bisect.bisect_left(widen_factors, 1)
    if lo <= one <= hi and widen_factors[one] == 1 and flags[one - lo]:
        return _run_through(flags, one - lo, lo)  # from k = 1 on the span is exact, whatever fits below
    return _longest_run(flags, lo)


def _largest_within(measure: Measure, limit: float, n: int, kernels: tuple[int, ...],
                    widen_factors: Sequence[float]) -> int:
    """Index of the largest widen factor whose exact cost is <= ``limit``, -1 if none: quadratic root, then
    exact steps."""

    def fits(index: int) -> bool:
        return measure(n, group_widths(widen_factors[index]), kernels) <= limit

    root = _quadratic_root(lambda k: measure(n, tuple(base * k for base in BASE_WIDTHS), kernels), limit)
    index = bisect.bisect_right(widen_factors, root) - 1
    while index >= 0 and not fits(index):
        index -= 1
    while index + 1 < len(widen_factors) and fits(index + 1):
        index += 1
    one = bisect.bisect_left(widen_factors, 1)
    if index < one < len(widen_factors) and widen_factors[one] == 1 and fits(one):
        index = one  # k = 1 has no group-1 shortcut: it can fit where slightly narrower nets do not
        while index + 1 < len(widen_factors) and fits(index + 1):
            index += 1
    return index


def _quadratic_root(cost: Callable[[float], float], limit: float) -> float:
    """Largest k with ``a k^2 + b k + c = limit``, the quadratic through cost(0), cost(2), cost(4).

    Unrounded widths make the cost model exactly this quadratic for every k != 1
    (at k = 1 group 1 needs no 1x1 shortcut); ``-inf`` when even k = 0 is over.
    """
    c, at2, at4 = cost(0.0), cost(2.0), cost(4.0)
    a = (at4 - 2 * at2 + c) / 8
    b = (at2 - c) / 2 - 2 * a
    discriminant = b * b - 4 * a * (c - limit)
    if c > limit or discriminant < 0:
        return -math.inf
    return (-b + math.sqrt(discriminant)) / (2 * a)


def _run_through(flags: list[bool], index: int, offset: int) -> tuple[int, int]:
    """``(start, end)`` (plus ``offset``) of the run of True in ``flags`` that contains ``index``."""
    start, end = index, index
    while start > 0 and flags[start - 1]:
        start -= 1
    while end + 1 < len(flags) and flags[end + 1]:
        end += 1
    return start + offset, end + offset


def _longest_run(flags: list[bool], offset: int) -> tuple[int, int] | None:
    """``(start, end)`` (plus ``offset``) of the longest run of True in ``flags``."""
    best: tuple[int, int] | None = None
    start = None
    for index, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            if best is None or index - start > best[1] - best[0] + 1:
                best = (start, index - 1)
            start = None
    return None if best is None else (best[0] + offset, best[1] + offset)
