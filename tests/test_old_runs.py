"""Runs of earlier versions: those made before the journal default kept their study in ``RUN_DIR/study.db``
(SQLite), and every command still reads and resumes them without writing a journal beside them; those
made before the layout by layer pickled their Tune snapshot under the flat layout's module names, which
``resume`` resolves (``wrn_search.compat``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from search_helpers import run_cli, study_of, write_space
from test_dashboard import ask

from wrn_search.dashboards.live import DashboardServer, optuna_server
from wrn_search.runs.layout import STUDY_FILE, STUDY_JOURNAL, RunManifest
from wrn_search.runs.storage import open_run_storage
from wrn_search.search import orchestrate as search
from wrn_search.spaces.space import load_space


def old_style_run(tmp_path, monkeypatch):
    """A real search made with the old default: ``init_run_dir`` recording ``sqlite:///RUN_DIR/study.db``.

    (``--study-storage`` cannot name a file inside a run not yet made, and a study copied there afterwards
    would not be the one Ray's snapshot of the searcher holds.)
    """
    new_run_dir = search.init_run_dir

    def init_with_study_db(space, run_dir, name, tune_path, study_storage, argv, table=None):
        return new_run_dir(space, run_dir, name, tune_path, f"sqlite:///{run_dir / STUDY_FILE}", argv, table)

    space = load_space(str(write_space(tmp_path, training={"epochs": 2}, search={"samples": 2, "scheduler": "none"})))
    with monkeypatch.context() as patch:
        patch.setattr(search, "init_run_dir", init_with_study_db)
        run_dir = search.run_search(space, name="old", storage_path=str(tmp_path / "runs"), progress=False).run_dir
    assert RunManifest.load(run_dir).storage == f"sqlite:///{run_dir / STUDY_FILE}"
    assert not (run_dir / STUDY_JOURNAL).exists()
    return run_dir


def served(server, path: str) -> tuple[int, bytes]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return ask(server, "GET", path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_study_db_run_resumes_and_every_reader_reads_it(local_ray, tmp_path, monkeypatch):
    run_dir = old_style_run(tmp_path, monkeypatch)
    search.resume_search(run_dir, samples=3, progress=False)
    assert len(study_of(run_dir).trials) == 3
    assert all(trial.state.name == "COMPLETE" for trial in study_of(run_dir).trials)

    status = run_cli("status", str(run_dir), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["trials"] == 3
    for command in (("pareto",), ("report", "-o", str(tmp_path / "report.html")),
                    ("export", "--pareto", "--out", str(tmp_path / "export"))):
        done = run_cli(command[0], str(run_dir), *command[1:], cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "report.html").stat().st_size > 0 and any((tmp_path / "export").iterdir())

    status_code, body = served(DashboardServer(run_dir, "127.0.0.1", 0), "/api/views.json")
    assert status_code == 200 and b"WRN-" in body
    storage = open_run_storage(run_dir, RunManifest.load(run_dir))
    study_id = storage.get_study_id_from_name(RunManifest.load(run_dir).study_name)
    status_code, body = served(optuna_server(storage, "127.0.0.1", 0), f"/api/studies/{study_id}")
    assert status_code == 200 and b"WRN-" in body
    assert not (run_dir / STUDY_JOURNAL).exists()


#: What the Tune snapshot (``tuner.pkl``, the searcher's state) of a run made by the flat layout (commit
#: 9d5ebad) pickles by reference, as a recording unpickler listed it, and where each is now.
FLAT_LAYOUT_PICKLES = {
    ("wrn_search.budget", "Budget"): ("wrn_search.spaces.budget", "CostBounds"),
    ("wrn_search.budget", "TrialBudget"): ("wrn_search.spaces.budget", "TrialBudget"),
    ("wrn_search.checkpoints", "trial_dirname"): ("wrn_search.runs.checkpoints", "trial_dirname"),
    ("wrn_search.recipe", "TrainConfig"): ("wrn_search.training.recipe", "TrainConfig"),
    ("wrn_search.rundir", "EpochsSpent"): ("wrn_search.runs.logs", "EpochsSpent"),
    ("wrn_search.samplers", "DistinctSampler"): ("wrn_search.search.samplers", "DistinctSampler"),
    ("wrn_search.samplers", "RungTPESampler"): ("wrn_search.search.samplers", "RungTPESampler"),
    ("wrn_search.schedulers", "SuccessiveHalving"): ("wrn_search.search.schedulers", "SuccessiveHalving"),
    ("wrn_search.search", "EpochLogger"): ("wrn_search.search.epoch_logger", "EpochLogger"),
    ("wrn_search.searcher", "RerunAwareConcurrencyLimiter"): ("wrn_search.search.searcher", "RerunAwareConcurrencyLimiter"),
    ("wrn_search.searcher", "ResumableSearchGenerator"): ("wrn_search.search.searcher", "ResumableSearchGenerator"),
    ("wrn_search.searcher", "StudySearcher"): ("wrn_search.search.searcher", "StudySearcher"),
    # a grid run's sampler, pickled from the searcher before the sampler moved to samplers.py
    ("wrn_search.searcher", "AskTellGridSampler"): ("wrn_search.search.samplers", "AskTellGridSampler"),
    ("wrn_search.space", "Axis"): ("wrn_search.spaces.sampling", "Axis"),
    ("wrn_search.space", "BlockTypeOption"): ("wrn_search.spaces.sampling", "BlockTypeOption"),
    ("wrn_search.space", "DatasetSection"): ("wrn_search.spaces.schema", "DatasetSection"),
    ("wrn_search.space", "Resources"): ("wrn_search.spaces.schema", "Resources"),
    ("wrn_search.space", "SearchSettings"): ("wrn_search.spaces.schema", "SearchSettings"),
    ("wrn_search.space", "SearchSpace"): ("wrn_search.spaces.space", "SearchSpace"),
    ("wrn_search.space", "SearchSpace.suggest"): ("wrn_search.spaces.space", "SearchSpace.suggest"),
}


@pytest.mark.parametrize("aliased", [False, True])
def test_a_snapshot_pickled_by_the_flat_layout_unpickles(aliased):
    """Each global a flat-layout snapshot holds, as pickle's GLOBAL opcode names it, in a fresh interpreter:
    found at its new home once the old names are aliased, and not found without."""
    code = ("import importlib, pickle, sys\n"
            f"import wrn_search.compat\n{'wrn_search.compat.alias_old_modules()' if aliased else ''}\n"
            f"pairs = {FLAT_LAYOUT_PICKLES!r}\n"
            "for (module, name), (home, qualname) in pairs.items():\n"
            "    expected = importlib.import_module(home)\n"
            "    for part in qualname.split('.'):\n"
            "        expected = getattr(expected, part)\n"
            "    found = pickle.loads(b'\\x80\\x04c' + f'{module}\\n{name}\\n'.encode() + b'.')\n"
            "    assert found is expected, (module, name, found, expected)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if aliased:
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        assert result.returncode == 1 and "Error" in result.stderr
