"""Results, Pareto front, report and export on the run directory of a real (tiny) search."""

from __future__ import annotations

import pandas as pd
import pytest
from browser import count_trace_points, render, requires_chromium
from run_fixtures import load_study

from wrn_search.cli import main
from wrn_search.dashboards.figures import PARETO_UID
from wrn_search.dashboards.report import write_report
from wrn_search.dashboards.views import build_views
from wrn_search.pareto import pareto_front
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.results import RunResults, load_curves, load_run, write_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from wrn_search.search.orchestrate import run_search
    from wrn_search.spaces.space import load_space

    space = load_space("quickstart").with_overrides(samples=5)
    return run_search(space, name="real", storage_path=str(tmp_path_factory.mktemp("search")), verbose=0).run_dir


def test_results_match_the_study(run):
    write_results(RunResults.load(run))
    frame, study = load_run(run).set_index("number"), load_study(run)
    manifest = RunManifest.load(run)
    assert len(frame) == len(study.trials) == 5
    curves = load_curves(run)
    for trial in study.trials:
        row = frame.loc[trial.number]
        assert row["state"] == trial.state.name and row["trial_id"] == trial.user_attrs["trial_id"]
        assert row["epochs"] == len(curves[curves["number"] == trial.number])
        if trial.state.name == "COMPLETE":
            assert row["epochs"] == manifest.epochs and row["val_error"] == trial.values[0]
            assert row["params"] == trial.values[1]
    best = sorted(t.number for t in study.best_trials)
    assert sorted(pareto_front(frame.reset_index(), manifest.objectives)["number"]) == best
    assert sorted(pd.read_csv(run / "pareto.csv")["number"]) == best


def test_report_and_export(run, tmp_path):
    views = build_views(RunResults.load(run))
    assert views["front_size"] == len(load_study(run).best_trials)
    front = pareto_front(load_run(run))
    assert main(["export", str(run), "--trial", front["trial_id"].iloc[0], "--out", str(tmp_path / "export"),
                 "--format", "torchscript"]) == 0
    assert (tmp_path / "export" / f"trial-{front['number'].iloc[0]}" / "model.torchscript.pt").is_file()


@requires_chromium
def test_chromium_renders_the_real_front(run, tmp_path):
    report = write_report(RunResults.load(run), tmp_path / "report.html")
    dom = render(report.as_uri(), tmp_path, "report-real-search.png")
    assert count_trace_points(dom, "pareto-params", PARETO_UID) == len(pareto_front(load_run(run)))
