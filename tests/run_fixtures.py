"""Run directories written exactly per docs/run-directory.md, around a real Optuna study.

Lets the results, Pareto, report and dashboard tests run in a second without
training anything; one test also checks them on a run from a real search.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import optuna

from wrn_search.network.spec import WRNSpec
from wrn_search.runs.storage import open_storage
from wrn_search.training.data import dataset_info


@dataclass(frozen=True)
class FakeTrial:
    """One trial as the search would leave it: its spec, final error, state and outcome."""

    name: str
    val_error: float
    state: str = "COMPLETE"
    outcome: str = "completed"
    epochs: int = 3
    #: Params to record instead of the spec's (a study written by another tool, or by hand).
    params: int | None = None


#: A small study: a three-point front, dominated trials, an early-stopped, a failed and a running one.
STANDARD_TRIALS = (
    FakeTrial("WRN-10-1-B(3,3)", 0.30),
    FakeTrial("WRN-16-1-B(3,3)", 0.20),
    FakeTrial("WRN-10-2-B(3,3)", 0.25),
    FakeTrial("WRN-16-2-B(3,3)", 0.12),
    FakeTrial("WRN-22-2-B(3,3)", 0.15),
    FakeTrial("WRN-10-4-B(3,3)", 0.40, "PRUNED", "stopped_early", 1),
    FakeTrial("WRN-22-4-B(3,3)", 0.90, "FAIL", "diverged", 2),
    FakeTrial("WRN-16-4-B(3,3)", 0.50, "RUNNING", "running", 2),
)


def trial_costs(name: str, dataset: str) -> tuple[WRNSpec, int, int]:
    spec = WRNSpec.parse(name)
    info = dataset_info(dataset)
    return spec, spec.num_params(info.num_classes, info.in_channels), spec.macs(info.input_size, info.num_classes, info.in_channels)


@functools.cache
def _empty_study_db() -> Path:
    """An SQLite file with Optuna's schema, made once per process: creating the schema takes half a second."""
    folder = Path(tempfile.mkdtemp(prefix="wrn-schema-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}").remove_session()
    return folder / "study.db"


#: How a run's study is kept: the default journal file, or the SQLite file of runs made before it.
STUDY_KINDS = ("journal", "sqlite")


def make_run(run_dir: Path, trials=STANDARD_TRIALS, dataset: str = "digits", budget: int = 3,
             objectives: tuple[str, ...] = ("val_error", "params"), study: str = "journal") -> Path:
    """Write run.json, the study, epochs.jsonl and trials.jsonl for ``trials``; return ``run_dir``.

    ``study``: ``journal`` (``study.log``, what a run writes) or ``sqlite`` (``study.db``, an old-style run).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    name = run_dir.name
    storage = str(run_dir / "study.log") if study == "journal" else f"sqlite:///{run_dir / 'study.db'}"
    created = time.time() - 1.0
    (run_dir / "run.json").write_text(json.dumps({
        "format_version": 1, "wrn_search_version": "0.1.0", "name": name, "study_name": f"{name}-0000",
        "storage": storage, "objectives": list(objectives), "directions": ["minimize"] * len(objectives),
        "tune_path": str(run_dir / "tune"), "experiment": "tune", "dataset": dataset, "epochs": budget,
        "samples": len(trials), "created": datetime.fromtimestamp(created, timezone.utc).isoformat(),
    }))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study == "sqlite":
        shutil.copy(_empty_study_db(), run_dir / "study.db")
    optuna.create_study(study_name=f"{name}-0000", storage=open_storage(storage),
                        directions=["minimize"] * len(objectives))
    return add_trials(run_dir, trials)


def add_trials(run_dir: Path, trials) -> Path:
    """Append ``trials`` to the run's study and logs, as a running search would."""
    manifest = json.loads((run_dir / "run.json").read_text())
    dataset, objectives = manifest["dataset"], manifest["objectives"]
    study = optuna.load_study(study_name=manifest["study_name"], storage=open_storage(manifest["storage"]))
    created = datetime.fromisoformat(manifest["created"]).timestamp()
    offset = len(study.trials)
    with open(run_dir / "epochs.jsonl", "a") as epochs_log, open(run_dir / "trials.jsonl", "a") as trials_log:
        for index, fake in enumerate(trials, start=offset):
            spec, params, macs = trial_costs(fake.name, dataset)
            params = params if fake.params is None else fake.params
            number = len(study.trials)  # add_trial numbers trials in order, as ask does
            trial_id = f"7a1b2_{index:05d}"
            attrs = {**spec.columns(), "params": params, "macs": macs, "epochs": fake.epochs, "trial_id": trial_id}
            if fake.state != "RUNNING":
                attrs["outcome"] = fake.outcome
            for epoch in range(1, fake.epochs + 1):
                last = epoch == fake.epochs and fake.state != "RUNNING"
                epochs_log.write(json.dumps({
                    "trial_id": trial_id, "number": number, "name": spec.name, "epoch": epoch,
                    "train_loss": 1.0 / epoch, "val_error": fake.val_error + 0.05 * (fake.epochs - epoch),
                    "val_loss": 0.5 / epoch, "lr": 0.1, "images_per_s": 2000.0, "epoch_seconds": 0.5,
                    "params": params, "macs": macs, "outcome": fake.outcome if last else "running",
                    "time": created + 1.0 + index + 0.1 * epoch,
                }) + "\n")
            # One write per trial (ask + set_user_attr + tell would commit a dozen times).
            values = {"val_error": fake.val_error, "params": params, "macs": macs}
            state = optuna.trial.TrialState[fake.state]
            study.add_trial(optuna.trial.create_trial(
                state=state, values=[values[o] for o in objectives] if state == state.COMPLETE else None,
                user_attrs=attrs))
            if fake.state == "RUNNING":
                continue
            trials_log.write(json.dumps({
                "trial_id": trial_id, "number": number, "name": spec.name, "state": fake.state,
                "outcome": fake.outcome, "epochs": fake.epochs, "val_error": fake.val_error, "params": params,
                "macs": macs, "time": created + 2.0 + index,
            }) + "\n")
    return run_dir


def load_study(run_dir: Path) -> optuna.Study:
    info = json.loads((run_dir / "run.json").read_text())
    return optuna.load_study(study_name=info["study_name"], storage=open_storage(info["storage"]))
