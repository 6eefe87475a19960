"""The static report: self-contained HTML whose Pareto plot, rendered by Chromium, has the front's points;
the error axis spans the front, cost axes read 10k/1M, hypervolume has its own panel from 0, repeated nets
and searched hyperparameters show; several runs compare against one reference point."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from browser import count_trace_points, render, requires_chromium
from plotly.offline import get_plotlyjs
from run_fixtures import FakeTrial, load_study, make_run

import wrn_search
from wrn_search.cli import main
from wrn_search.dashboards.axes import log_ticks
from wrn_search.dashboards.compare import compare_views
from wrn_search.dashboards.figures import PARETO_UID, HistoryLine, front_table, history_figure, pareto_figure
from wrn_search.dashboards.paper import paper_points
from wrn_search.dashboards.views import build_views
from wrn_search.pareto import hypervolume_history, pareto_front
from wrn_search.runs.results import RunResults, load_run


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report") / "cifar-run", dataset="cifar10")


@pytest.fixture(scope="module")
def report(cifar_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "report.html"
    assert main(["report", str(cifar_run), "-o", str(out)]) == 0
    return out


def values(array) -> list:
    """The numbers of a figure's array in the views JSON: plotly writes numpy arrays base64-encoded."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), array["dtype"]).tolist()
    return list(array)


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
    views = build_views(RunResults.load(cifar_run))
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
    views = build_views(RunResults.load(make_run(tmp_path / "digits-run")))
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
    for tick in ("100k", "1M", "100M"):  # SI ticks, not plotly's 2, 5, 10^5
        assert f">{tick}</text>" in dom, tick
    assert re.search(r'<div [^>]*id="history"', dom) and ">hypervolume / reference box</text>" in dom


@requires_chromium
def test_chromium_renders_every_compared_front(comparison, two_runs, tmp_path):
    dom = render(comparison.as_uri(), tmp_path, "compare.png")
    for index, run in enumerate(two_runs):
        expected = len(pareto_front(load_run(run), ["val_error", "params"]))
        assert count_trace_points(dom, "pareto-params", f"{PARETO_UID}-{index}") == expected
    assert "tpe-run vs random-run" in dom and "<h2 id=\"table-title\">Runs</h2>" in dom


def test_hypervolume_has_its_own_panel_from_zero():
    """Hypervolume and best error on one plot with two y axes flattened the error line; a run whose best
    error never moved must not get an axis centred on it with negative ticks either."""
    history = pd.DataFrame({"elapsed_seconds": [10.0, 20.0], "hypervolume_fraction": [0.5, 0.5],
                            "best_val_error": [0.0, 0.0], "name": ["WRN-10-1", "WRN-10-2"]})
    figure = history_figure([HistoryLine("run", history, "green")], ["val_error", "params"], [1.0, 1e5])
    layout = figure.layout
    assert layout.yaxis.rangemode == "tozero" and layout.yaxis2.rangemode == "nonnegative"
    assert layout.yaxis2.overlaying is None and max(layout.yaxis2.domain) < min(layout.yaxis.domain)  # stacked
    assert [(trace.yaxis, list(trace.y)) for trace in figure.data] == [("y", [0.5, 0.5]), ("y2", [0.0, 0.0])]


def test_the_error_axis_spans_the_front_and_trials_beyond_sit_on_its_edge(cifar_run):
    figure = build_views(RunResults.load(cifar_run))["figures"]["pareto-params"]
    low, high = figure["layout"]["yaxis"]["range"]
    errors = [*pareto_front(load_run(cifar_run))["val_error"], *(p.test_error for p in paper_points("cifar10"))]
    assert low <= min(errors) and max(errors) < high < 0.5  # the failed trial (0.9) no longer stretches it
    by_name = {trace["name"].split(" (")[0]: trace for trace in figure["data"]}
    for label, error in (("failed", 0.9), ("running", 0.5)):
        trace = by_name[label]
        assert list(trace["marker"]["symbol"]) == ["arrow-up"] and low < values(trace["y"])[0] < high
        assert trace["customdata"][0][5] == error  # the hover keeps the true error
    assert list(by_name["stopped early"]["marker"]["symbol"]) == ["triangle-up-open"]  # 0.40 is inside
    assert "2 trial(s) beyond this error range" in figure["layout"]["annotations"][0]["text"]


def test_cost_axes_tick_1_2_5_per_decade_in_si_units(cifar_run):
    assert log_ticks([5722, 120_000]) == [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6]
    assert log_ticks([1e3, 1e9]) == [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]  # decades alone beyond three
    assert log_ticks([15_000, 45_000])[:4] == [1e4, 1.5e4, 2e4, 3e4]  # within a decade, every digit
    assert log_ticks([float("nan")]) == []
    axis = build_views(RunResults.load(cifar_run))["figures"]["pareto-macs"]["layout"]["xaxis"]
    assert axis["type"] == "log" and axis["tickformat"] == "~s" and 1e8 in axis["tickvals"]


@pytest.fixture
def searched_frame(cifar_run):
    """The cifar run as if it had searched lr and trained its cheapest net twice (trial 8, lr 0.02)."""
    frame = load_run(cifar_run)
    frame["lr"] = [0.1, 0.05, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1]
    again = frame.iloc[[0]].assign(number=8, val_error=0.35, lr=0.02)
    return pd.concat([frame, again], ignore_index=True)


def test_hover_shows_the_searched_hyperparameters_and_other_trials_of_the_net(searched_frame):
    figure = pareto_figure(searched_frame, pareto_front(searched_frame, ["val_error", "params"]), "params")
    hover = {row[1]: row[7] for trace in figure.data if trace.customdata is not None for row in trace.customdata}
    assert hover[0] == "<br>lr=0.1<br>same net in 2 trials: #0, #8"
    assert hover[8] == "<br>lr=0.02<br>same net in 2 trials: #0, #8" and hover[3] == "<br>lr=0.2"
    assert "%{customdata[7]}" in figure.data[0].hovertemplate
    ring = next(trace for trace in figure.data if trace.name.startswith("same net, several trials"))
    assert ring.name == "same net, several trials (1)"
    assert list(ring.x) == [77850.0, 77850.0, None] and list(ring.y) == [0.30, 0.35, None]


def test_a_repeat_of_a_front_point_is_on_the_front_not_dominated(tmp_path):
    """Two trials of one net with one error are one point (pareto_front may list it once)."""
    trials = (FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-10-1", 0.3), FakeTrial("WRN-16-1", 0.2))
    views = build_views(RunResults.load(make_run(tmp_path / "tie", trials)))
    params = traces(views, "pareto-params")
    assert len(params["dominated, full budget"]["customdata"]) == 0
    assert params["same net, several trials"]["name"].endswith("(1)")
    assert [t["name"] for t in views["figures"]["curves"]["data"]] == ["Pareto set"] * 3


def test_the_pareto_table_has_a_column_per_searched_hyperparameter(searched_frame):
    table = front_table(pareto_front(searched_frame, ["val_error", "params"]))
    assert "<th>lr</th>" in table and "<td>0.2</td>" in table


def test_report_of_one_run_goes_into_the_run_directory(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out == f"wrote {run / 'report.html'}\n" and (run / "report.html").is_file()
    (run / "report.html").unlink()
    assert wrn_search.report(run) == run / "report.html" and (run / "report.html").is_file()


OTHER_TRIALS = (FakeTrial("WRN-10-1-B(3,3)", 0.28), FakeTrial("WRN-40-4-B(3,3)", 0.10),
                FakeTrial("WRN-16-1-B(3,3)", 0.35, "PRUNED", "stopped_early", 1))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return make_run(folder / "tpe-run", dataset="cifar10"), make_run(folder / "random-run", OTHER_TRIALS, "cifar10")


@pytest.fixture(scope="module")
def comparison(two_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare-out") / "compare.html"
    assert main(["report", *map(str, two_runs), "-o", str(out)]) == 0
    return out


def test_compare_overlays_fronts_and_hypervolumes_against_one_reference(two_runs):
    views = compare_views(two_runs)
    frames = [load_run(run) for run in two_runs]
    assert views["title"] == "wrn-search: tpe-run vs random-run" and list(views["figures"]) == [
        "pareto-params", "pareto-macs", "history"]
    largest = max(frame["params"].max() for frame in frames)  # WRN-40-4 of the second run
    reference = (1.0, 1.1 * largest)
    assert f"params = {reference[1]:,.4g}" in views["summary"]
    for x in ("params", "macs"):
        data = views["figures"][f"pareto-{x}"]["data"]
        fronts = {t["uid"]: t for t in data if t.get("uid", "").startswith(PARETO_UID)}
        assert {uid: len(values(t["x"])) for uid, t in fronts.items()} == {
            f"{PARETO_UID}-0": len(pareto_front(frames[0], ["val_error", x])),
            f"{PARETO_UID}-1": len(pareto_front(frames[1], ["val_error", x]))}
        assert all("<br>run tpe-run" in row[7] for row in fronts[f"{PARETO_UID}-0"]["customdata"])
    history = [t for t in views["figures"]["history"]["data"] if t["yaxis"] == "y"]
    assert [t["name"] for t in history] == ["tpe-run", "random-run"]
    for trace, frame in zip(history, frames):
        expected = hypervolume_history(frame, ["val_error", "params"], reference)["hypervolume_fraction"]
        assert values(trace["y"]) == pytest.approx(list(expected))
    assert views["table"].count("<tr>") == 3 and "random-run" in views["table"]


def test_compare_refuses_runs_with_other_objectives(two_runs, tmp_path, capsys):
    macs_run = make_run(tmp_path / "macs-run", objectives=("val_error", "macs"))
    assert main(["report", str(two_runs[0]), str(macs_run), "-o", str(tmp_path / "c.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "same objectives" in err and "val_error, macs" in err
    assert not (tmp_path / "c.html").exists()


def test_compare_needs_an_output_file(two_runs, capsys):
    assert main(["report", *map(str, two_runs)]) == 2
    assert "needs an output file (-o FILE)" in capsys.readouterr().err
    assert not any((run / "report.html").exists() for run in two_runs)


def test_the_api_compares_runs_too(two_runs, tmp_path):
    assert wrn_search.report(*two_runs, out=tmp_path / "c.html") == tmp_path / "c.html"
    assert "tpe-run vs random-run" in (tmp_path / "c.html").read_text()
