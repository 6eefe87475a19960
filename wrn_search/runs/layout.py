"""The run directory: the names of its files, its manifest (``run.json``), and making a new one.

See ``docs/run-directory.md`` for the layout. Everything a run keeps is plain files, so a run can be
inspected with ``cat`` and survives a kill of any process: crash-safe writes and the JSONL logs are in
:mod:`wrn_search.runs.files` and :mod:`wrn_search.runs.logs`, the study storage in :mod:`wrn_search.runs.storage`.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import typing
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from wrn_search import __version__
from wrn_search.errors import BadInput, RunDamaged
from wrn_search.runs.files import has_type, type_name, write_atomic
from wrn_search.runs.lock import LOCK_FILE
from wrn_search.spaces.budget import TrialBudget
from wrn_search.spaces.space import SearchSpace

FORMAT_VERSION = 1
MANIFEST = "run.json"
SPACE_FILE = "space.yaml"
COMMAND_FILE = "command.txt"
EPOCH_LOG = "epochs.jsonl"
TRIAL_LOG = "trials.jsonl"
#: The early-stopping rung decisions, one JSON line each (``schedulers.SuccessiveHalving``).
SCHEDULER_LOG = "scheduler.jsonl"
RESULTS_CSV = "results.csv"
PARETO_CSV = "pareto.csv"
TUNE_DIR = "tune"
#: The study of a run made before 2026-12-08 without ``--study-storage``: SQLite. Still read and resumed.
STUDY_FILE = "study.db"
#: Optuna's table of studies: a SQLite file without it holds no study.
OPTUNA_STUDY_TABLE = "studies"
#: A run's study without ``--study-storage``: Optuna's journal file. Only the driver writes the study,
#: so an append-only local file serves it; SQLite's transaction per write and re-read of every running
#: trial per ask do not scale to hundreds of concurrent trials (benchmarks/decision_latency.py).
STUDY_JOURNAL = "study.log"
#: A simulated run's table, seed, workers and simulated seconds.
SIMULATION_FILE = "simulation.json"


#: The longest file name Linux filesystems take (NAME_MAX), in bytes.
NAME_MAX = 255


def check_run_name(name: str) -> str:
    """A run name that names one new directory right under the storage path, printable in every message."""
    if not (name and name.isprintable() and "/" not in name and not name.startswith(".")
            and len(name.encode()) <= NAME_MAX):
        raise BadInput(f"name: {name!r} is not a valid run name (1 to {NAME_MAX} bytes of printable characters, "
                       "no '/', not starting with '.')")
    return name


@dataclass
class RunManifest:
    """What ``run.json`` holds: enough to reopen the study and the Ray experiment."""

    name: str
    study_name: str
    storage: str
    objectives: list[str]
    directions: list[str]
    #: The Ray experiment; None for a simulated run.
    tune_path: str | None
    dataset: str
    epochs: int
    samples: int
    #: ``search.epoch_budget`` (None: unlimited); ``resume --epoch-budget`` may change it, like ``samples``.
    epoch_budget: int | None = None
    #: The benchmark table a simulated run replayed (``wrn-search simulate``); None for a Ray run.
    table: str | None = None
    experiment: str = TUNE_DIR
    format_version: int = FORMAT_VERSION
    wrn_search_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def trial_budget(self) -> TrialBudget:
        return TrialBudget(self.samples, self.epoch_budget)

    def save(self, run_dir: Path) -> None:
        write_atomic(Path(run_dir) / MANIFEST, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> RunManifest:
        """Read ``run.json``; a directory that is not a run, or a run of another format, is a ``ValueError``."""
        run_dir = Path(run_dir)
        path = run_dir / MANIFEST
        if not run_dir.is_dir():
            raise BadInput(f"run_dir: {str(run_dir)!r} is not a directory")
        if not path.is_file():
            raise BadInput(f"run_dir: {str(run_dir)!r} is not a wrn-search run (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RunDamaged(f"run_dir: {path} is unreadable ({error})") from None
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise RunDamaged(
                f"run_dir: {str(run_dir)!r} has run format {version!r}; this wrn-search {__version__} "
                f"reads format {FORMAT_VERSION}"
            )
        known = {f.name for f in fields(cls)}
        missing = known - set(data) - {"epoch_budget", "table", "experiment", "created", "wrn_search_version"}
        if missing:
            raise RunDamaged(f"run_dir: {path} lacks keys {sorted(missing)}")
        values = {key: value for key, value in data.items() if key in known}
        # A hand-edited or corrupt field fails here, naming itself, not later as a traceback in a reader.
        for key, hint in typing.get_type_hints(cls).items():
            if key in values and not has_type(values[key], hint):
                raise RunDamaged(f"run_dir: {path}: {key!r} must be {type_name(hint)}, got {values[key]!r}")
        if "created" in values:  # load_run counts elapsed seconds from it
            try:
                datetime.fromisoformat(values["created"])
            except ValueError:
                raise RunDamaged(f"run_dir: {path}: 'created' must be an ISO 8601 time, "
                                 f"got {values['created']!r}") from None
        return cls(**values)


#: Where runs go when no --storage-path is given.
DEFAULT_STORAGE_PATH = "wrn-runs"


def run_dir_for(name: str, storage_path: str) -> tuple[Path, str]:
    """The local run directory and Ray's storage location (a URI such as s3://bucket/runs works too)."""
    if "://" in storage_path:
        return Path(DEFAULT_STORAGE_PATH).resolve() / name, f"{storage_path.rstrip('/')}/{name}"
    run_dir = Path(storage_path).expanduser().resolve() / name
    return run_dir, str(run_dir)


def record_command(run_dir: Path, argv: list[str] | None) -> None:
    line = shlex.join(argv if argv is not None else ["wrn-search", *sys.argv[1:]])
    with open(run_dir / COMMAND_FILE, "a") as file:
        file.write(line + "\n")


def init_run_dir(space: SearchSpace, run_dir: Path, name: str, tune_path: str | None, study_storage: str | None,
                 argv: list[str] | None, table: str | None = None) -> RunManifest:
    """Write a new run directory's space, manifest and command; ``table`` names a simulated run's table."""
    budget = space.trial_budget()
    manifest = RunManifest(
        name=name, study_name=f"{name}-{uuid.uuid4().hex[:8]}",
        storage=study_storage or str(run_dir / STUDY_JOURNAL),
        objectives=list(space.search.objectives), directions=["minimize"] * len(space.search.objectives),
        tune_path=tune_path, dataset=space.dataset.name, epochs=space.training.epochs,
        samples=budget.samples, epoch_budget=budget.epoch_budget, table=table,
    )
    space.to_yaml(run_dir / SPACE_FILE)
    manifest.save(run_dir)
    record_command(run_dir, argv)
    return manifest


def never_started(run_dir: Path) -> bool:
    """A directory a killed ``run`` left before it wrote ``run.json``: nothing in it but what comes first."""
    return set(os.listdir(run_dir)) <= {SPACE_FILE, LOCK_FILE}
