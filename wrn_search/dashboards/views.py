"""Everything the report and the dashboard show about a run, as one JSON document.

The static report embeds it; the live dashboard serves it and the page
re-fetches it every few seconds, so both render the same figures.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from plotly.io.json import to_json_plotly

from wrn_search.pareto import hypervolume_history, pareto_front, reference_point
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import RunResults

from .figures import FRONT_COLOR, HistoryLine, curves_figure, front_table, history_figure, pareto_figure
from .paper import paper_points

#: Figure ids in page order; the page makes one div per id.
FIGURE_IDS = ("pareto-params", "pareto-macs", "history", "curves")


def summary_line(manifest: RunManifest, frame: pd.DataFrame, front: pd.DataFrame, fraction: float) -> str:
    counts = frame["state"].value_counts()
    return (f"{manifest.name} · {manifest.dataset} · {len(frame)} trials: {counts.get('COMPLETE', 0)} at full "
            f"budget ({manifest.epochs} epochs), {counts.get('PRUNED', 0)} stopped early, {counts.get('FAIL', 0)} "
            f"failed, {counts.get('RUNNING', 0)} running · Pareto set {len(front)} · hypervolume "
            f"{fraction:.4f} of the reference box")


def build_views(results: RunResults) -> dict:
    """Title, summary, figures (plotly dicts keyed by :data:`FIGURE_IDS`) and the Pareto table of a run.

    Every view of the report and the dashboard has ``title``, ``summary``, ``updated``, ``figures``
    (in page order), ``table_title`` and ``table``; :func:`.compare.compare_views` makes the same keys.
    Takes loaded results, so a search's end draws the report from the read that wrote its CSVs.
    """
    manifest, frame, front = results.manifest, results.trials, results.front
    objectives = list(manifest.objectives)
    reference = reference_point(frame, objectives)
    history = hypervolume_history(frame, objectives, reference)
    paper = paper_points(manifest.dataset)
    figures = {
        f"pareto-{x}": pareto_figure(frame, pareto_front(frame, ["val_error", x]), x, paper) for x in ("params", "macs")
    }
    figures["history"] = history_figure([HistoryLine(manifest.name, history, FRONT_COLOR)], objectives, reference)
    figures["curves"] = curves_figure(results.curves, frame, front)
    fraction = float(history["hypervolume_fraction"].iloc[-1]) if len(history) else 0.0
    return {
        "title": f"wrn-search: {manifest.name}",
        "summary": summary_line(manifest, frame, front, fraction),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "figures": {key: figures[key].to_plotly_json() for key in FIGURE_IDS},
        "front_size": len(front),
        "table_title": "Pareto set",
        "table": front_table(front),
    }


def views_json(views: dict) -> str:
    """The views as JSON (plotly's encoder handles the numpy arrays inside figures)."""
    return to_json_plotly(views)
