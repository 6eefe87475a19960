"""Plotly figures of a run, built from the frames of :mod:`wrn_search.results` and :mod:`wrn_search.pareto`.

The static report and the live dashboard show exactly these figures.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .paper import PaperPoint

#: Plotly gives a scatter trace's SVG group the class ``trace<uid>``: a browser test counts the front's points by it.
PARETO_UID = "paretofront"
#: Marker and line style of the trials off the front, by state.
STYLES = {
    "COMPLETE": dict(label="full budget", color="#9aa5b1", symbol="circle", dash="solid"),
    "PRUNED": dict(label="stopped early", color="#e8a33d", symbol="triangle-up-open", dash="dot"),
    "FAIL": dict(label="failed", color="#d64545", symbol="x", dash="dash"),
    "RUNNING": dict(label="running", color="#3d8bd6", symbol="circle-open", dash="solid"),
}
FRONT_COLOR = "#1a7f37"
AXIS_TITLES = {"params": "parameters", "macs": "multiply-accumulates per image", "val_error": "validation error"}
HOVER = ("<b>%{customdata[0]}</b><br>trial %{customdata[1]} (%{customdata[2]})<br>params %{customdata[3]:,}"
         "<br>MACs %{customdata[4]:,}<br>val error %{customdata[5]:.4f}<br>epochs %{customdata[6]}<extra></extra>")
#: Keeps zoom and hidden traces when the live dashboard redraws.
UIREVISION = "wrn-search"


def _hover_data(frame: pd.DataFrame) -> np.ndarray:
    columns = ["name", "number", "outcome", "params", "macs", "val_error", "epochs"]
    return frame[columns].astype(object).where(frame[columns].notna(), "?").to_numpy()


def _layout(figure: go.Figure, title: str, height: int = 480) -> go.Figure:
    figure.update_layout(title=title, template="plotly_white", height=height, uirevision=UIREVISION,
                         legend=dict(orientation="h", y=-0.18), margin=dict(l=60, r=30, t=60, b=40))
    return figure


def pareto_figure(frame: pd.DataFrame, front: pd.DataFrame, x: str, paper: Sequence[PaperPoint] = ()) -> go.Figure:
    """Error against cost: the front as a staircase, the other trials styled by state, the paper's WRNs."""
    figure = go.Figure()
    off_front = frame[~frame["number"].isin(front["number"])]
    for state, style in STYLES.items():
        rows = off_front[off_front["state"] == state]
        # A failed trial may have no error: draw it at the top (error 1.0) so it is still seen.
        y = rows["val_error"].astype(float).fillna(1.0)
        label = f"dominated, {style['label']}" if state == "COMPLETE" else style["label"]
        figure.add_scatter(x=rows[x].astype(float), y=y, mode="markers", name=f"{label} ({len(rows)})",
                           marker=dict(color=style["color"], symbol=style["symbol"], size=8),
                           customdata=_hover_data(rows), hovertemplate=HOVER)
    if paper:
        figure.add_scatter(
            x=[getattr(p, x) for p in paper], y=[p.test_error for p in paper], mode="markers",
            name="paper WRNs (test error, Table 4)", text=[p.name for p in paper],
            marker=dict(color="black", symbol="diamond-open", size=9),
            hovertemplate="<b>%{text}</b> (paper)<br>test error %{y:.4f}<br>%{x:,}<extra></extra>")
    figure.add_scatter(x=front[x].astype(float), y=front["val_error"], mode="lines+markers", uid=PARETO_UID,
                       name=f"Pareto front ({len(front)})", line=dict(shape="hv", color=FRONT_COLOR, width=2),
                       marker=dict(color=FRONT_COLOR, size=10), customdata=_hover_data(front), hovertemplate=HOVER)
    figure.update_xaxes(type="log", title=AXIS_TITLES[x])
    figure.update_yaxes(title=AXIS_TITLES["val_error"])
    return _layout(figure, f"Validation error vs {AXIS_TITLES[x]}")


def curves_figure(curves: pd.DataFrame, frame: pd.DataFrame, front: pd.DataFrame) -> go.Figure:
    """Validation error per epoch of every trial, styled by the trial's state; the Pareto set's in green."""
    figure = go.Figure()
    states = frame.set_index("number")["state"]
    on_front = set(front["number"])
    shown: set[str] = set()
    for number, curve in curves.groupby("number", sort=True):
        state = states.get(number, "RUNNING")
        state = state if state in STYLES else "RUNNING"  # WAITING: asked for, not started
        group = "FRONT" if number in on_front else state
        style = {**STYLES[state], "color": FRONT_COLOR, "label": "Pareto set"} if group == "FRONT" else STYLES[state]
        figure.add_scatter(x=curve["epoch"], y=curve["val_error"], mode="lines+markers", legendgroup=group,
                           name=style["label"], showlegend=group not in shown,
                           line=dict(color=style["color"], dash=style["dash"], width=1.5), marker=dict(size=4),
                           hovertemplate=f"<b>{html.escape(str(curve['name'].iloc[-1]))}</b> (trial {number})"
                                         "<br>epoch %{x}: val error %{y:.4f}<extra></extra>")
        shown.add(group)
    figure.update_xaxes(title="epoch")
    figure.update_yaxes(title=AXIS_TITLES["val_error"])
    return _layout(figure, "Learning curves")


def history_figure(history: pd.DataFrame, columns: Sequence[str], reference: Sequence[float]) -> go.Figure:
    """Hypervolume (as a fraction of the reference box) and best error, against wall time."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    minutes = history["elapsed_seconds"] / 60
    figure.add_scatter(x=minutes, y=history["hypervolume_fraction"], mode="lines+markers", name="hypervolume",
                       line=dict(shape="hv", color=FRONT_COLOR), customdata=history["name"],
                       hovertemplate="%{x:.1f} min: %{y:.4f} after %{customdata}<extra></extra>")
    figure.add_scatter(x=minutes, y=history["best_val_error"], mode="lines+markers", name="best val error",
                       line=dict(shape="hv", color="#6f42c1", dash="dot"), secondary_y=True,
                       hovertemplate="%{x:.1f} min: best val error %{y:.4f}<extra></extra>")
    figure.update_xaxes(title="wall time since the run was created (min)")
    # Both are >= 0; a constant series would otherwise get an axis centred on it, with negative ticks.
    figure.update_yaxes(title="hypervolume / reference box", rangemode="nonnegative", secondary_y=False)
    figure.update_yaxes(title=AXIS_TITLES["val_error"], rangemode="nonnegative", secondary_y=True)
    ref = ", ".join(f"{c} = {r:,.4g}" for c, r in zip(columns, reference))
    return _layout(figure, f"Hypervolume and best error over time (reference point: {ref})", height=420)


def front_table(front: pd.DataFrame) -> str:
    """The Pareto set as an HTML table (values escaped)."""
    header = ["#", "name", "params", "MACs", "val error", "epochs", "trial id"]
    rows = [
        [row.number, row.name, f"{row.params:,}", f"{row.macs:,}", f"{row.val_error:.4f}", row.epochs, row.trial_id]
        for row in front.itertuples(index=False)
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="pareto-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
