"""How a space's axes become Optuna parameters, and back.

A searched hyperparameter is an :class:`Axis`; the architecture is three parameters (block type, N and
k) whose one formula, :class:`Structure`, maps them onto the feasible nets and back, so a study's first
trials can be placed on chosen nets (:meth:`SearchSpace.spread_over_params`) and a warm start can
enter a net as the parameters the sampler would have drawn. Imports only the network layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wrn_search.errors import BadInput
from wrn_search.network.spec import WRNSpec, format_block_type
from wrn_search.spaces.schema import MAX_GRID


@dataclass(frozen=True)
class Axis:
    """A searched hyperparameter: ``choices``, or the range ``low..high`` (discrete with ``step`` or ``integer``)."""

    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def continuous(self) -> bool:
        return not self.choices and not self.integer and self.step is None

    def grid(self, where: str) -> list:
        """Every value of a discrete axis; more than MAX_GRID is an error naming ``where``."""
        if self.choices:
            return list(self.choices)
        if self.integer:
            values = range(int(self.low), int(self.high) + 1, int(self.step or 1))
            if len(values) > MAX_GRID:
                raise BadInput(f"{where}: {len(values):,} values; at most {MAX_GRID:,} (a larger step?)")
            return list(values)
        return arange(self.low, self.high, self.step, where)

    def suggest(self, trial, name: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        value = trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        return round(value, 10) if self.step else value

    def to_yaml(self) -> Any:
        if self.choices:
            return list(self.choices)
        return {"min": self.low, "max": self.high, **({"step": self.step} if self.step else {}),
                **({"log": True} if self.log else {})}


@dataclass(frozen=True)
class BlockTypeOption:
    """One feasible block type with its feasible N, each with the span of ``widen_factors`` indices that fits
    the budget."""

    kernels: tuple[int, ...]
    spans: tuple[tuple[int, int, int], ...]  # (N, lo, hi)

    @property
    def block_type(self) -> str:
        return format_block_type(self.kernels)

    @property
    def blocks_per_group(self) -> tuple[int, ...]:
        return tuple(n for n, _, _ in self.spans)

    def span(self, n: int) -> tuple[int, int]:
        return next((lo, hi) for m, lo, hi in self.spans if m == n)


@dataclass(frozen=True)
class Structure:
    """Block type, N and k as one parameter each, with one distribution for the whole study.

    Optuna's grouped TPE keeps the first distribution it sees for a name, so a range that depended on
    earlier choices would confine it to the first trial's range. N is drawn over every block type's N
    and moved to the nearest one the block type allows; k is drawn over the whole grid and mapped
    linearly into the span that fits the budget (both identity where the budget cuts nothing), so
    every feasible net stays reachable. :meth:`params` inverts :meth:`suggest`.
    """

    block_types: tuple[BlockTypeOption, ...]
    widen_factors: tuple[float, ...]

    def suggest(self, trial) -> WRNSpec:
        """The net drawn in ``trial`` (an ``optuna.Trial``)."""
        block_type = trial.suggest_categorical("block_type", [option.block_type for option in self.block_types])
        option = next(option for option in self.block_types if option.block_type == block_type)
        ns = sorted({n for other in self.block_types for n in other.blocks_per_group})
        if ns == list(range(ns[0], ns[-1] + 1)):
            wanted = trial.suggest_int("blocks_per_group", ns[0], ns[-1])
        else:
            wanted = trial.suggest_categorical("blocks_per_group", ns)
        n = min(option.blocks_per_group, key=lambda allowed: (abs(allowed - wanted), allowed))
        step = self._width_step()
        if step:
            low, high = int(self.widen_factors[0]), int(self.widen_factors[-1])
            position = (trial.suggest_int("widen_factor", low, high, step=step) - low) // step
        else:
            position = trial.suggest_int("widen_factor_index", 0, len(self.widen_factors) - 1)
        return WRNSpec(n, self.widen_factors[self._index(option, n, position)], option.kernels)

    def params(self, spec: WRNSpec) -> dict:
        """The parameters :meth:`suggest` turns into ``spec`` (a feasible architecture)."""
        option = next(option for option in self.block_types if option.kernels == spec.kernels)
        index = self.widen_factors.index(spec.widen_factor)
        position = next(p for p in range(len(self.widen_factors))
                        if self._index(option, spec.blocks_per_group, p) == index)
        step = self._width_step()
        if step:
            width = {"widen_factor": int(self.widen_factors[0]) + position * step}
        else:
            width = {"widen_factor_index": position}
        return {"block_type": option.block_type, "blocks_per_group": spec.blocks_per_group, **width}

    def _index(self, option: BlockTypeOption, n: int, position: int) -> int:
        """The widen factor index that k grid ``position`` maps to for ``option`` with N = ``n``."""
        lo, hi = option.span(n)
        return lo + round(position * (hi - lo) / max(1, len(self.widen_factors) - 1))

    def _width_step(self) -> int:
        """The step of an evenly spaced integer k grid (offered as k itself), else 0 (offered by index)."""
        steps = {b - a for a, b in zip(self.widen_factors, self.widen_factors[1:])}
        if all(float(k).is_integer() for k in self.widen_factors) and len(steps) <= 1:
            return int(next(iter(steps), 1))
        return 0


def arange(low: float, high: float, step: float, where: str) -> list[float]:
    """``low, low + step, ... <= high``; more than MAX_GRID values is an error, found before listing any."""
    if not (high - low) / step < MAX_GRID:  # also catches an infinite quotient of a tiny step
        raise BadInput(f"{where}: {low:g} to {high:g} in steps of {step:g} is too many values; "
                       f"at most {MAX_GRID:,} (a larger step?)")
    return [round(low + index * step, 10) for index in range(math.floor((high - low) / step + 1e-9) + 1)]
