"""The static report: one self-contained HTML file (plotly.js and the data inlined) that opens offline.

Of one run (:func:`.views.build_views`) or a comparison of several (:func:`.compare.compare_views`).
"""

from __future__ import annotations

from pathlib import Path

from plotly.offline import get_plotlyjs

from wrn_search.runs.files import write_atomic
from wrn_search.runs.results import RunResults

from .compare import compare_views
from .page import page_html
from .views import build_views, views_json

#: Where the report of one run goes unless told otherwise.
REPORT_FILE = "report.html"


def report_html(views: dict) -> str:
    return page_html(views["title"], plotly_js=get_plotlyjs(), views_json=views_json(views))


def write_html(views: dict, out: str | Path) -> Path:
    """Write the page of ``views`` to ``out`` (its folder must exist) and return the path.

    Atomically: a kill or a full disk mid-write leaves the previous report, never a truncated one.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output: folder {out.parent} does not exist")
    write_atomic(out, report_html(views))
    return out


def write_report(results: RunResults, out: str | Path | None = None) -> Path:
    """Write the report of a run's ``results`` to ``out`` (default: the run's ``report.html``); return the path.
    The commands that search pass it as their ``on_results``."""
    return write_html(build_views(results), results.run_dir / REPORT_FILE if out is None else out)


def report(*run_dirs: str | Path, out: str | Path | None = None) -> Path:
    """The report of one run (to ``RUN_DIR/report.html`` by default) or the comparison of several
    (``out`` required: no run directory is the obvious home of it); returns the file written."""
    if not run_dirs:
        raise ValueError("runs: name at least one run directory")
    if len(run_dirs) == 1:
        return write_report(RunResults.load(run_dirs[0]), out)
    if out is None:
        raise ValueError("output: a comparison of several runs needs an output file (-o FILE)")
    return write_html(compare_views(run_dirs), out)
