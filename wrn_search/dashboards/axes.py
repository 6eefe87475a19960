"""The axes every figure shares: log cost axes with readable ticks, an error axis fitted to the front.

A search's stopped and failed trials have errors far above its front (a failed
trial is drawn at 1.0); an axis stretched to them squeezes the front into a
line. The error axis therefore spans the front, and trials beyond it are drawn
on its edge as arrows, their true error in the hover text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

AXIS_TITLES = {"params": "parameters", "macs": "multiply-accumulates per image", "val_error": "validation error"}
#: Keeps zoom and hidden traces when the live dashboard redraws.
UIREVISION = "wrn-search"


def layout(figure: go.Figure, title: str, height: int = 480) -> go.Figure:
    figure.update_layout(title=title, template="plotly_white", height=height, uirevision=UIREVISION,
                         legend=dict(orientation="h", y=-0.18), margin=dict(l=60, r=30, t=60, b=40))
    return figure


def log_ticks(values: Iterable[float]) -> list[float]:
    """Tick values of a log axis over ``values``: 1, 2 and 5 per decade, every digit within one decade,
    decades alone beyond three; with :func:`cost_axis`'s SI format they read 1k, 20k, 500k, 1M."""
    positive = [float(v) for v in values if pd.notna(v) and math.isfinite(v) and v > 0]
    if not positive:
        return []
    low, high = min(positive), max(positive)
    span = math.log10(high / low)
    steps = (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9) if span <= 1 else (1, 2, 5) if span <= 3 else (1,)
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    return [step * 10.0**decade for decade in decades for step in steps]


def cost_axis(column: str, values: Iterable[float]) -> dict:
    """A log axis for params or MACs: ticks as 10k, 1M rather than plotly's 2, 5, 10^5."""
    return dict(type="log", title=AXIS_TITLES[column], tickvals=log_ticks(values), tickformat="~s")


@dataclass(frozen=True)
class ErrorWindow:
    """The shown range of the error axis; ``low`` and ``high`` infinite show everything (no front yet)."""

    low: float = -math.inf
    high: float = math.inf

    @classmethod
    def around(cls, errors: Iterable[float]) -> ErrorWindow:
        """The errors' range with a margin, more above (where dominated trials lie), never below 0."""
        values = [float(e) for e in errors if pd.notna(e) and math.isfinite(e)]
        if not values:
            return cls()
        low, high = min(values), max(values)
        return cls(max(0.0, low - max(0.25 * (high - low), 0.01)), high + max(0.5 * (high - low), 0.02))

    def place(self, errors: pd.Series, symbol: str) -> dict:
        """``y`` and per-point ``marker_symbol`` of a scatter trace: errors beyond the window on its edge, as arrows."""
        values = errors.astype(float).to_numpy()
        symbols = np.where(values > self.high, "arrow-up", np.where(values < self.low, "arrow-down", symbol))
        return dict(y=np.clip(values, self.low, self.high), marker_symbol=symbols.tolist())

    def apply(self, figure: go.Figure, errors: pd.Series) -> go.Figure:
        """Set the error axis to the window (padded so edge markers show whole) and say how many
        of ``errors`` (every trial drawn) lie beyond it."""
        figure.update_yaxes(title=AXIS_TITLES["val_error"])
        if not math.isfinite(self.high):
            return figure
        pad = 0.03 * (self.high - self.low)
        figure.update_yaxes(range=[self.low - pad, self.high + pad])
        values = errors.astype(float)
        beyond = int(((values > self.high) | (values < self.low)).sum())
        if beyond:
            figure.add_annotation(
                text=f"▲▼ {beyond} trial(s) beyond this error range, drawn at its edge (hover: their error)",
                xref="paper", yref="paper", x=1, y=1, xanchor="right", yanchor="bottom", showarrow=False,
                font=dict(size=11, color="#666"))
        return figure
