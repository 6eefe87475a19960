"""Several runs on one page (``wrn-search report RUN1 RUN2 ...``): their Pareto fronts and hypervolume
curves overlaid, every hypervolume against one common reference point.

A run's own reference grows with its costliest trial, so hypervolumes of two
runs are comparable only against the same point: here 1.0 for the error and
1.1 x the largest cost of all the runs. Runs compared must share objectives.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from wrn_search.pareto import hypervolume_history, pareto_front, reference_point
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import RunResults

from .axes import AXIS_TITLES, ErrorWindow, cost_axis, layout
from .figures import (
    PARETO_UID,
    HistoryLine,
    front_trace,
    history_figure,
    html_table,
    on_front,
    trial_markers,
    trial_notes,
)

#: One colour per run, in the order given.
RUN_COLORS = qualitative.D3


@dataclass(frozen=True)
class ComparedRun:
    label: str
    results: RunResults
    color: str

    @property
    def manifest(self) -> RunManifest:
        return self.results.manifest

    @property
    def frame(self) -> pd.DataFrame:
        return self.results.trials


def load_runs(run_dirs: Sequence[str | Path]) -> list[ComparedRun]:
    """The runs, labelled by name (numbered where names repeat); refused unless they share objectives."""
    runs = [RunResults.load(run_dir) for run_dir in run_dirs]
    for run_dir, run in zip(run_dirs[1:], runs[1:]):
        if list(run.manifest.objectives) != list(runs[0].manifest.objectives):
            raise ValueError(f"runs: {run_dir} has objectives {', '.join(run.manifest.objectives)} but {run_dirs[0]} "
                             f"has {', '.join(runs[0].manifest.objectives)}; "
                             "only runs with the same objectives compare")
    repeated = {name for name, count in Counter(r.manifest.name for r in runs).items() if count > 1}
    return [ComparedRun(f"{r.manifest.name} #{index + 1}" if r.manifest.name in repeated else r.manifest.name, r,
                        RUN_COLORS[index % len(RUN_COLORS)])
            for index, r in enumerate(runs)]


def compare_pareto_figure(runs: Sequence[ComparedRun], x: str) -> go.Figure:
    """Each run's front over error and ``x`` in its colour, its dominated full-budget trials faint behind."""
    fronts = [pareto_front(run.frame, ["val_error", x]) for run in runs]
    window = ErrorWindow.around(error for front in fronts for error in front["val_error"])
    figure = go.Figure()
    costs: list[float] = []
    errors: list[float] = []
    for index, (run, front) in enumerate(zip(runs, fronts)):
        notes = f"<br>run {html.escape(run.label)}" + trial_notes(run.frame)
        frame = run.frame[run.frame[x].notna()]
        others = frame[(frame["state"] == "COMPLETE") & ~on_front(frame, front)]
        costs += [*others[x], *front[x]]
        errors += [*others["val_error"], *front["val_error"]]
        figure.add_trace(trial_markers(others, x, window, notes, f"{run.label}: dominated ({len(others)})", run.color,
                                       "circle", size=6, opacity=0.4, legendgroup=run.label))
        figure.add_trace(front_trace(front, x, window, notes, f"{run.label}: Pareto front ({len(front)})", run.color,
                                     f"{PARETO_UID}-{index}", legendgroup=run.label))
    figure.update_xaxes(cost_axis(x, costs))
    window.apply(figure, pd.Series(errors, dtype=float))
    return layout(figure, f"Pareto fronts: validation error vs {AXIS_TITLES[x]}")


def runs_table(runs: Sequence[ComparedRun], histories: Sequence[pd.DataFrame]) -> str:
    """One row per run: its trials, front and hypervolume against the common reference."""
    header = ["run", "dataset", "trials", "full budget", "Pareto set", "hypervolume", "best val error",
              "minutes to last full-budget trial"]
    rows = []
    for run, history in zip(runs, histories):
        done = len(history) > 0
        rows.append([run.label, run.manifest.dataset, len(run.frame), int((run.frame["state"] == "COMPLETE").sum()),
                     len(run.results.front),
                     f"{history['hypervolume_fraction'].iloc[-1]:.4f}" if done else "0",
                     f"{history['best_val_error'].iloc[-1]:.4f}" if done else "none",
                     f"{history['elapsed_seconds'].iloc[-1] / 60:.1f}" if done else ""])
    return html_table(header, rows, "runs-table")


def compare_views(run_dirs: Sequence[str | Path]) -> dict:
    """The views (as :func:`.views.build_views` makes them) of several runs compared."""
    runs = load_runs([Path(run_dir).resolve() for run_dir in run_dirs])
    objectives = list(runs[0].manifest.objectives)
    # Each run's own point is 1.1 x its largest cost: the largest of them is 1.1 x the largest of all.
    reference = tuple(np.fmax.reduce([reference_point(run.frame, objectives) for run in runs]).tolist())
    histories = [hypervolume_history(run.frame, objectives, reference) for run in runs]
    figures = {f"pareto-{x}": compare_pareto_figure(runs, x) for x in ("params", "macs")}
    figures["history"] = history_figure(
        [HistoryLine(run.label, history, run.color) for run, history in zip(runs, histories)], objectives, reference)
    point = ", ".join(f"{c} = {r:,.4g}" for c, r in zip(objectives, reference))
    return {
        "title": "wrn-search: " + " vs ".join(run.label for run in runs),
        "summary": f"{len(runs)} runs · objectives {', '.join(objectives)} · hypervolumes against one reference "
                   f"point ({point}), as fractions of its box",
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "figures": {key: figure.to_plotly_json() for key, figure in figures.items()},
        "table_title": "Runs",
        "table": runs_table(runs, histories),
    }
