"""The static report: self-contained HTML whose Pareto plot, rendered by Chromium, has the front's points."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from browser import count_trace_points, render, requires_chromium
from plotly.offline import get_plotlyjs
from run_fixtures import load_study, make_run

from wrn_search.dashboards.figures import PARETO_UID, history_figure
from wrn_search.cli import main
from wrn_search.dashboards.views import build_views
from wrn_search.pareto import pareto_front
from wrn_search.results import load_run


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report") / "cifar-run", dataset="cifar10")


@pytest.fixture(scope="module")
def report(cifar_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report.html"
    assert main(["report", str(cifar_run), "-o", str(out)]) == 0
    return out


def traces(views: dict, figure_id: str) -> dict:
    return {trace["name"].split(" (")[0]: trace for trace in views["figures"][figure_id]["data"]}


def test_report_is_self_contained(report):
    text = report.read_text()
    assert get_plotlyjs() in text  # the bundle itself is inlined...
    page = text.replace(get_plotlyjs(), "")
    assert "<script src=" not in page and not re.search(r"https?://", page)  # ...and nothing else is fetched
    embedded = re.search(r'<script type="application/json" id="views">(.*?)</script>', text, re.S).group(1)
    views = json.loads(embedded)
    assert views["title"] == "wrn-search: cifar-run" and "Pareto set 3" in views["summary"]


def test_views_mark_front_states_and_paper(cifar_run):
    views = build_views(cifar_run)
    best = sorted(t.number for t in load_study(cifar_run).best_trials)
    params = traces(views, "pareto-params")
    front = params["Pareto front"]
    assert front["uid"] == PARETO_UID and sorted(row[1] for row in front["customdata"]) == best
    assert [row[0] for row in front["customdata"]][0] == "WRN-10-1-B(3,3)"  # hover names, cheapest first
    assert len(params["stopped early"]["customdata"]) == 1 and len(params["failed"]["customdata"]) == 1
    assert len(params["running"]["customdata"]) == 1 and len(params["dominated, full budget"]["customdata"]) == 2
    paper = params["paper WRNs"]
    assert "WRN-28-10-B(3,3)" in paper["text"] and "test error" in paper["name"]
    assert traces(views, "pareto-macs")["Pareto front"]["uid"] == PARETO_UID
    assert len(views["figures"]["curves"]["data"]) == 8
    assert "reference point: val_error = 1" in views["figures"]["history"]["layout"]["title"]["text"]
    assert views["front_size"] == 3 and views["table"].count("<tr>") == 4


def test_no_paper_points_for_other_datasets(tmp_path):
    views = build_views(make_run(tmp_path / "digits-run"))
    assert "paper WRNs" not in traces(views, "pareto-params")


def test_report_of_an_empty_run(tmp_path):
    out = tmp_path / "empty.html"
    assert main(["report", str(make_run(tmp_path / "empty", trials=())), "-o", str(out)]) == 0
    assert "0 trials" in out.read_text()


def test_report_bad_output_folder_is_exit_2(cifar_run, tmp_path, capsys):
    assert main(["report", str(cifar_run), "-o", str(tmp_path / "missing" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


@requires_chromium
def test_chromium_renders_the_pareto_front(report, cifar_run, tmp_path):
    dom = render(report.as_uri(), tmp_path, "report.png")
    frame = load_run(cifar_run)
    assert count_trace_points(dom, "pareto-params", PARETO_UID) == len(pareto_front(frame, ["val_error", "params"]))
    assert count_trace_points(dom, "pareto-macs", PARETO_UID) == len(pareto_front(frame, ["val_error", "macs"]))
    assert count_trace_points(dom, "pareto-params", PARETO_UID) == 3
    assert "WRN-16-2-B(3,3)" in dom and "Pareto set 3" in dom


def test_history_axes_never_go_negative():
    """A run whose best error never moved must not get an axis centred on it with negative ticks."""
    history = pd.DataFrame({"elapsed_seconds": [10.0, 20.0], "hypervolume_fraction": [0.5, 0.5],
                            "best_val_error": [0.0, 0.0], "name": ["WRN-10-1", "WRN-10-2"]})
    layout = history_figure(history, ["val_error", "params"], [1.0, 1e5]).layout
    assert layout.yaxis.rangemode == "nonnegative" and layout.yaxis2.rangemode == "nonnegative"
