"""Plotly figures of a run, built from the frames of :mod:`wrn_search.runs.results` and :mod:`wrn_search.pareto`.

The static report and the live dashboard show exactly these figures; the
comparison of runs (:mod:`.compare`) builds on the same traces.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from wrn_search.runs.results import hyperparameter_columns, hyperparameter_text, source_text

from .axes import AXIS_TITLES, ErrorWindow, cost_axis, layout
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
REPEAT_COLOR = "#555555"
#: Fields of the hover text, in ``customdata`` order; the last is :func:`trial_notes`'.
HOVER_FIELDS = ["name", "number", "outcome", "params", "macs", "val_error", "epochs"]
HOVER = ("<b>%{customdata[0]}</b><br>trial %{customdata[1]} (%{customdata[2]})<br>params %{customdata[3]:,}"
         "<br>MACs %{customdata[4]:,}<br>val error %{customdata[5]:.4f}<br>epochs %{customdata[6]}"
         "%{customdata[7]}<extra></extra>")
#: Trial numbers listed in the note of a net trained several times.
LISTED_REPEATS = 8


def trial_notes(frame: pd.DataFrame) -> pd.Series:
    """Hover lines by trial number: its searched hyperparameters, and the other trials of its net,
    so two trials of one net tell apart."""
    trials = frame.groupby("name")["number"].agg(lambda numbers: sorted(numbers))
    notes = {}
    for _, row in frame.iterrows():
        lines = [hyperparameter_text(row)] if hyperparameter_columns(row) else []
        lines.append(source_text(row))
        same = trials.get(row["name"], [])
        if len(same) > 1:
            listed = ", ".join(f"#{n}" for n in same[:LISTED_REPEATS]) + (", …" if len(same) > LISTED_REPEATS else "")
            lines.append(f"same net in {len(same)} trials: {listed}")
        notes[row["number"]] = "".join(f"<br>{line}" for line in lines if line)
    return pd.Series(notes, dtype=object)


def on_front(frame: pd.DataFrame, front: pd.DataFrame) -> pd.Series:
    """Mask of the trials of ``frame`` on ``front``, also those that :func:`~wrn_search.pareto.pareto_front`
    folds into a listed trial of the same net with the same error (they are the same point)."""
    point = pd.MultiIndex.from_frame(frame[["name", "val_error"]]).isin(
        pd.MultiIndex.from_frame(front[["name", "val_error"]]))
    tied = point & frame["state"].eq("COMPLETE")
    return frame["number"].isin(front["number"]) | tied


def drawn_errors(rows: pd.DataFrame) -> pd.Series:
    """Errors as drawn: a trial without one (failed before its first epoch) at 1.0, so it is still seen."""
    return rows["val_error"].astype(float).fillna(1.0)


def _hover_data(rows: pd.DataFrame, notes: pd.Series) -> np.ndarray:
    data = rows[HOVER_FIELDS].astype(object).where(rows[HOVER_FIELDS].notna(), "?")
    data["notes"] = notes.reindex(rows["number"]).fillna("").to_numpy()
    return data.to_numpy()


def trial_markers(rows: pd.DataFrame, x: str, window: ErrorWindow, notes: pd.Series, name: str, color: str,
                  symbol: str, size: int = 8, **trace) -> go.Scatter:
    """Trials as markers, in one colour and symbol."""
    placed = window.place(drawn_errors(rows), symbol)
    return go.Scatter(x=rows[x].astype(float), y=placed["y"], mode="markers", name=name,
                      marker=dict(color=color, symbol=placed["marker_symbol"], size=size),
                      customdata=_hover_data(rows, notes), hovertemplate=HOVER, **trace)


def front_trace(front: pd.DataFrame, x: str, window: ErrorWindow, notes: pd.Series, name: str, color: str,
                uid: str, **trace) -> go.Scatter:
    """A Pareto front as a staircase: each point's error holds until the next, cheaper-is-worse, point."""
    placed = window.place(front["val_error"], "circle")
    return go.Scatter(x=front[x].astype(float), y=placed["y"], mode="lines+markers", uid=uid, name=name,
                      line=dict(shape="hv", color=color, width=2),
                      marker=dict(color=color, size=10, symbol=placed["marker_symbol"]),
                      customdata=_hover_data(front, notes), hovertemplate=HOVER, **trace)


def repeats_trace(frame: pd.DataFrame, x: str, window: ErrorWindow) -> go.Scatter:
    """Rings around the trials of every net trained more than once, joined by a dotted line:
    one net has one cost, so its trials stand in one column."""
    drawn = frame[frame[x].notna()]
    repeated = drawn[drawn.duplicated("name", keep=False)]
    xs: list[float | None] = []
    ys: list[float | None] = []
    for _, trials in repeated.groupby("name", sort=True):
        y = window.place(drawn_errors(trials), "circle")["y"]
        xs += [float(trials[x].iloc[0])] * len(y) + [None]
        ys += sorted(y.tolist()) + [None]
    return go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"same net, several trials ({repeated['name'].nunique()})",
                      line=dict(color=REPEAT_COLOR, dash="dot", width=1),
                      marker=dict(symbol="circle-open", size=15, color=REPEAT_COLOR), hoverinfo="skip")


def pareto_figure(frame: pd.DataFrame, front: pd.DataFrame, x: str, paper: Sequence[PaperPoint] = ()) -> go.Figure:
    """Error against cost: the front as a staircase, the other trials styled by state, nets trained
    more than once ringed, the paper's WRNs; the error axis spans the front and the paper's nets."""
    window = ErrorWindow.around([*front["val_error"], *(p.test_error for p in paper)])
    notes = trial_notes(frame)
    figure = go.Figure()
    off_front = frame[~on_front(frame, front)]
    for state, style in STYLES.items():
        rows = off_front[off_front["state"] == state]
        label = f"dominated, {style['label']}" if state == "COMPLETE" else style["label"]
        figure.add_trace(trial_markers(rows, x, window, notes, f"{label} ({len(rows)})", style["color"],
                                       style["symbol"]))
    if frame["name"].duplicated().any():
        figure.add_trace(repeats_trace(frame, x, window))
    if paper:
        placed = window.place(pd.Series([p.test_error for p in paper]), "diamond-open")
        figure.add_scatter(
            x=[getattr(p, x) for p in paper], y=placed["y"], mode="markers", customdata=[p.test_error for p in paper],
            name="paper WRNs (test error, Table 4)", text=[p.name for p in paper],
            marker=dict(color="black", symbol=placed["marker_symbol"], size=9),
            hovertemplate="<b>%{text}</b> (paper)<br>test error %{customdata:.4f}<br>%{x:,}<extra></extra>")
    figure.add_trace(front_trace(front, x, window, notes, f"Pareto front ({len(front)})", FRONT_COLOR, PARETO_UID))
    figure.update_xaxes(cost_axis(x, [*frame[x], *(getattr(p, x) for p in paper)]))
    window.apply(figure, drawn_errors(frame[frame[x].notna()]))
    return layout(figure, f"Validation error vs {AXIS_TITLES[x]}")


def curves_figure(curves: pd.DataFrame, frame: pd.DataFrame, front: pd.DataFrame) -> go.Figure:
    """Validation error per epoch of every trial, styled by the trial's state; the Pareto set's in green."""
    figure = go.Figure()
    states = frame.set_index("number")["state"]
    notes = trial_notes(frame)
    in_front = set(frame.loc[on_front(frame, front), "number"])
    shown: set[str] = set()
    for number, curve in curves.groupby("number", sort=True):
        state = states.get(number, "RUNNING")
        state = state if state in STYLES else "RUNNING"  # WAITING: asked for, not started
        group = "FRONT" if number in in_front else state
        style = {**STYLES[state], "color": FRONT_COLOR, "label": "Pareto set"} if group == "FRONT" else STYLES[state]
        figure.add_scatter(x=curve["epoch"], y=curve["val_error"], mode="lines+markers", legendgroup=group,
                           name=style["label"], showlegend=group not in shown,
                           line=dict(color=style["color"], dash=style["dash"], width=1.5), marker=dict(size=4),
                           hovertemplate=f"<b>{html.escape(str(curve['name'].iloc[-1]))}</b> (trial {number})"
                                         f"{notes.get(number, '')}"
                                         "<br>epoch %{x}: val error %{y:.4f}<extra></extra>")
        shown.add(group)
    figure.update_xaxes(title="epoch")
    figure.update_yaxes(title=AXIS_TITLES["val_error"])
    return layout(figure, "Learning curves")


@dataclass(frozen=True)
class HistoryLine:
    """One run's :func:`wrn_search.pareto.hypervolume_history`, as drawn."""

    label: str
    history: pd.DataFrame
    color: str


def history_figure(lines: Sequence[HistoryLine], columns: Sequence[str], reference: Sequence[float]) -> go.Figure:
    """Hypervolume (as a fraction of the reference box, on an axis from 0) above the best error, against
    wall time, one colour per run; each has its own panel, so neither flattens the other."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                           subplot_titles=("hypervolume / reference box", "best validation error"))
    for line in lines:
        minutes = line.history["elapsed_seconds"] / 60
        figure.add_scatter(x=minutes, y=line.history["hypervolume_fraction"], mode="lines+markers", name=line.label,
                           legendgroup=line.label, line=dict(shape="hv", color=line.color),
                           customdata=line.history["name"], hovertemplate="%{x:.1f} min: %{y:.4f} after %{customdata}",
                           row=1, col=1)
        figure.add_scatter(x=minutes, y=line.history["best_val_error"], mode="lines+markers", name=line.label,
                           legendgroup=line.label, showlegend=False,
                           line=dict(shape="hv", color=line.color, dash="dot"),
                           hovertemplate="%{x:.1f} min: best val error %{y:.4f}", row=2, col=1)
    figure.update_xaxes(title="wall time since the run was created (min)", row=2, col=1)
    figure.update_yaxes(rangemode="tozero", row=1, col=1)
    # >= 0; a constant series would otherwise get an axis centred on it, with negative ticks.
    figure.update_yaxes(rangemode="nonnegative", row=2, col=1)
    figure.update_layout(showlegend=len(lines) > 1)
    ref = ", ".join(f"{c} = {r:,.4g}" for c, r in zip(columns, reference))
    return layout(figure, f"Hypervolume and best error over time (reference point: {ref})", height=560)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]], css_class: str) -> str:
    """An HTML table (values escaped)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def front_table(front: pd.DataFrame) -> str:
    """The Pareto set as an HTML table, with a column per searched hyperparameter."""
    searched = hyperparameter_columns(front)
    header = ["#", "name", "params", "MACs", "val error", "epochs", "trial id", *searched]
    rows = [
        [row["number"], row["name"], f"{row['params']:,}", f"{row['macs']:,}", f"{row['val_error']:.4f}",
         row["epochs"], source_text(row) or row["trial_id"],
         *(f"{row[h]:g}" if pd.notna(row[h]) else "" for h in searched)]
        for _, row in front.iterrows()
    ]
    return html_table(header, rows, "pareto-table")
