"""The run directory: its manifest (``run.json``) and its durable append-only logs.

See ``docs/run-directory.md`` for the layout. Everything here is plain files so a
run can be inspected with ``cat`` and survives a kill of any process.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from . import __version__

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
STUDY_FILE = "study.db"
#: A simulated run's study: Optuna's journal file, written in one go when the simulation ends.
STUDY_JOURNAL = "study.log"
#: A simulated run's table, seed, workers and simulated seconds.
SIMULATION_FILE = "simulation.json"


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

    def save(self, run_dir: Path) -> None:
        write_atomic(Path(run_dir) / MANIFEST, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> RunManifest:
        """Read ``run.json``; a directory that is not a run, or a run of another format, is a ``ValueError``."""
        run_dir = Path(run_dir)
        path = run_dir / MANIFEST
        if not run_dir.is_dir():
            raise ValueError(f"run_dir: {str(run_dir)!r} is not a directory")
        if not path.is_file():
            raise ValueError(f"run_dir: {str(run_dir)!r} is not a wrn-search run (no {MANIFEST})")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"run_dir: {path} is unreadable ({error})") from None
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise ValueError(
                f"run_dir: {str(run_dir)!r} has run format {version!r}; this wrn-search {__version__} "
                f"reads format {FORMAT_VERSION}"
            )
        known = {f.name for f in fields(cls)}
        missing = known - set(data) - {"epoch_budget", "table", "experiment", "created", "wrn_search_version"}
        if missing:
            raise ValueError(f"run_dir: {path} lacks keys {sorted(missing)}")
        return cls(**{key: value for key, value in data.items() if key in known})


def open_storage(url: str):
    """An Optuna storage: a SQLAlchemy URL, or a journal file (a path ending in .log or .jsonl)."""
    import optuna

    try:
        if "://" not in url and url.endswith((".log", ".jsonl")):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url))
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # SQLAlchemy raises many kinds; all mean "cannot open"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"study-storage: cannot open {url!r}: {reason}") from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename: readers never see half a file."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temp, 0o644)  # mkstemp makes it private; these are plain result files
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and fsync it, so a kill right after loses nothing already appended.

    A line torn by an earlier kill is closed first, so the new record starts a line of its own.
    """
    line = json.dumps(record, default=_jsonable) + "\n"
    with open(path, "a+b") as file:
        if file.tell() > 0:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                line = "\n" + line
        file.write(line.encode())
        file.flush()
        os.fsync(file.fileno())


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Append many JSON lines with one fsync (a simulated run's logs, written once at its end)."""
    with open(path, "a") as file:
        file.writelines(json.dumps(record, default=_jsonable) + "\n" for record in records)
        file.flush()
        os.fsync(file.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """All complete records of a JSONL log; a line torn by a kill is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


#: What ``epochs.jsonl`` keeps of a reported epoch.
EPOCH_KEYS = ("epoch", "train_loss", "val_error", "val_loss", "lr", "images_per_s", "epoch_seconds",
              "params", "macs", "outcome", "node_id")


def epoch_record(trial_id: str, config: dict, result: dict, resources: dict, now: float) -> dict:
    """One line of ``epochs.jsonl``: the trial, its reported epoch, the resources it held, and when."""
    record = {"trial_id": trial_id, "number": config.get("number"), "name": config.get("name")}
    record.update({key: result[key] for key in EPOCH_KEYS if key in result})
    record["resources"] = resources
    record["time"] = now
    return record


def count_epoch(trained: dict[str, int], trial_id: str, epoch: int | None) -> None:
    """Keep the highest epoch of each trial: one re-run from a checkpoint reports epochs again; they count once."""
    if epoch is not None:
        trained[trial_id] = max(trained.get(trial_id, 0), int(epoch))


def trained_epochs(run_dir: str | Path) -> dict[str, int]:
    """The highest epoch each Ray trial id logged in ``epochs.jsonl``: the epochs spent against
    ``search.epoch_budget``."""
    trained: dict[str, int] = {}
    for record in read_jsonl(Path(run_dir) / EPOCH_LOG):
        count_epoch(trained, record["trial_id"], record.get("epoch"))
    return trained


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
