"""The static report: one self-contained HTML file (plotly.js and the data inlined) that opens offline."""

from __future__ import annotations

from pathlib import Path

from plotly.offline import get_plotlyjs

from wrn_search.rundir import write_atomic

from .page import page_html
from .views import build_views, views_json


def report_html(run_dir: str | Path) -> str:
    views = build_views(run_dir)
    return page_html(views["title"], plotly_js=get_plotlyjs(), views_json=views_json(views))


def write_report(run_dir: str | Path, out: str | Path) -> Path:
    """Write the report of ``run_dir`` to ``out`` (its folder must exist) and return the path.

    Atomically: a kill or a full disk mid-write leaves the previous report, never a truncated one.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output: folder {out.parent} does not exist")
    write_atomic(out, report_html(run_dir))
    return out
