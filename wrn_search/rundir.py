"""The run directory: its manifest (``run.json``) and its durable append-only logs.

See ``docs/run-directory.md`` for the layout. Everything here is plain files so a
run can be inspected with ``cat`` and survives a kill of any process.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
import sqlite3
import sys
import tempfile
import types
import typing
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .budget import TrialBudget
from .checks import is_int

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
        raise ValueError(f"name: {name!r} is not a valid run name (1 to {NAME_MAX} bytes of printable characters, "
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
        values = {key: value for key, value in data.items() if key in known}
        # A hand-edited or corrupt field fails here, naming itself, not later as a traceback in a reader.
        for key, hint in typing.get_type_hints(cls).items():
            if key in values and not _has_type(values[key], hint):
                raise ValueError(f"run_dir: {path}: {key!r} must be {_type_name(hint)}, got {values[key]!r}")
        if "created" in values:  # load_run counts elapsed seconds from it
            try:
                datetime.fromisoformat(values["created"])
            except ValueError:
                raise ValueError(f"run_dir: {path}: 'created' must be an ISO 8601 time, "
                                 f"got {values['created']!r}") from None
        return cls(**values)


class StudyRefused(ValueError):
    """A study file that a reader will not open (missing, or no Optuna study in it)."""


def open_storage(url: str, read_only: bool = False):
    """An Optuna storage: a SQLAlchemy URL, or a journal file (a path ending in .log or .jsonl).

    ``read_only`` (``status``, ``pareto``, ``report``, ``dashboard``, ``export``) never writes to the study:
    Optuna would create a missing journal file, or its schema in an empty database, on open. A reader
    refuses a missing or empty study in one line, opens SQLite files read-only and creates no tables.
    """
    import optuna

    journal = "://" not in url and url.endswith((".log", ".jsonl"))
    try:
        if journal:
            from .journal import GroupCommitJournalBackend

            if read_only and not Path(url).is_file():
                raise StudyRefused(f"study-storage: {url} does not exist (no study yet?)")
            if not read_only:
                cut_torn_record(Path(url))
            return optuna.storages.JournalStorage(GroupCommitJournalBackend(url))  # fsynced per decision
        if not read_only:
            _check_sqlite_file(_sqlite_path(url))
        return optuna.storages.RDBStorage(_read_only_url(url) if read_only else url, skip_table_creation=read_only)
    except StudyRefused:
        raise
    except Exception as error:  # SQLAlchemy raises many kinds; all mean "cannot open"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"study-storage: cannot open {url!r}: {reason}") from None


#: How much of a journal's end is read at a time, looking for its last complete record.
_TAIL_BLOCK = 1 << 16


def cut_torn_record(path: Path) -> None:
    """Cut a record a kill tore off the end of an Optuna journal file (no newline after it), saying so.

    Optuna reads past such a tail, but appends its next record onto it: the study then holds a bad
    line in its middle, and no command can read it again. A reader leaves the file as it is.
    """
    if not path.is_file():
        return
    with open(path, "r+b") as file:
        size = end = file.seek(0, os.SEEK_END)
        while end > 0:  # find the last newline, a block at a time from the end
            start = max(0, end - _TAIL_BLOCK)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end == size:
            return
        file.truncate(end)
        file.flush()
        os.fsync(file.fileno())
    _log.warning(f"wrn-search: warning: study-storage: {path}: removed a record torn by a kill at its end "
                 f"({size - end} bytes); the study continues from the record before it")


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another database, or one in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _check_intact(database: sqlite3.Connection, path: Path) -> None:
    """SQLite's quick check of every page: a study with damaged pages would fail later, mid-query, in a traceback."""
    problems = [row for (row,) in database.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise _damaged(path, problems[0])


def _damaged(path: Path, detail: object) -> StudyRefused:
    return StudyRefused(f"study-storage: {path} is damaged ({detail}); restore it from a backup, or save what "
                        f"SQLite can still read with `sqlite3 {path} .recover`")


def _check_sqlite_file(path: Path | None) -> None:
    """A writer's check of an existing SQLite study (opening it also rolls back a transaction cut by a kill)."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return  # not SQLite, or a new study: Optuna writes its schema
    try:
        with closing(sqlite3.connect(path)) as database:
            _check_intact(database, path)
    except sqlite3.Error as error:
        raise _damaged(path, error) from None


def _read_only_url(url: str) -> str:
    """``url``, made to open a SQLite file read-only once the file is known to hold Optuna's tables.

    Checked first: Optuna, finding no tables, would try to write them, and fail on a
    read-only file with a misleading error.
    """
    from sqlalchemy.engine import URL, make_url

    path = _sqlite_path(url)
    if path is None:
        return url
    if not path.is_file():
        raise StudyRefused(f"study-storage: {path} does not exist (no study yet?)")
    uri = path.resolve().as_uri()
    try:
        with closing(sqlite3.connect(f"{uri}?mode=ro", uri=True)) as database:
            tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if OPTUNA_STUDY_TABLE in tables:
                _check_intact(database, path)
    except sqlite3.Error as error:
        name = getattr(error, "sqlite_errorname", None)
        if name == "SQLITE_READONLY_ROLLBACK":
            raise StudyRefused(f"study-storage: {path} holds a transaction cut by a kill, which only a writer rolls "
                               f"back (`wrn-search resume`, or `sqlite3 {path} 'PRAGMA quick_check'`)") from None
        if name == "SQLITE_CORRUPT":
            raise _damaged(path, error) from None
        raise StudyRefused(f"study-storage: {path} is not a readable SQLite database ({error})") from None
    if OPTUNA_STUDY_TABLE not in tables:
        raise StudyRefused(f"study-storage: {path} holds no Optuna study ({path.stat().st_size} bytes, "
                           f"no {OPTUNA_STUDY_TABLE!r} table)")
    parsed = make_url(url)
    query = {**parsed.query, "mode": "ro", "uri": "true"}
    return URL.create(parsed.drivername, database=uri, query=query).render_as_string(hide_password=False)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (as UTF-8) to ``path`` through a temp file and a rename: readers never see half a file,
    and a kill or a full disk mid-write leaves the old file."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temp, 0o644)  # mkstemp makes it private; these are plain result files
        with os.fdopen(handle, "w", encoding="utf-8") as file:
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


@dataclass(frozen=True)
class LogSchema:
    """What readers rely on in the lines of a JSONL log: the type of each field, and the fields every line has."""

    types: dict[str, typing.Any]
    required: tuple[str, ...]

    def problem(self, record: dict) -> str | None:
        """Why ``record`` breaks the schema, or None."""
        for key in self.required:
            if key not in record:
                return f"no {key!r}"
        for key, hint in self.types.items():
            if key in record and not _has_type(record[key], hint):
                return f"{key!r} must be {_type_name(hint)}, got {reprlib.repr(record[key])}"
        return None


#: A JSON number (``NaN`` and ``Infinity`` included): an integer that a float holds, or a float.
Number = float
#: The integers an ``int`` field may hold (pandas keeps counts as int64); JSON allows any number of digits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The largest integer a float holds (``float(10**400)`` raises OverflowError).
FLOAT_MAX = int(sys.float_info.max)
#: The fields of ``epochs.jsonl`` that the results, the curves and the epoch count read.
EPOCH_SCHEMA = LogSchema(
    types={"trial_id": str, "number": int | None, "name": str | None, "epoch": int, "val_error": Number | None,
           "epoch_seconds": Number | None, "params": Number | None, "macs": Number | None, "outcome": str,
           "time": Number, "retrained": bool},
    required=("trial_id", "epoch"),
)
#: The fields of ``trials.jsonl`` that the results read.
TRIAL_SCHEMA = LogSchema(
    types={"number": int, "trial_id": str | None, "name": str | None, "state": str, "outcome": str, "epochs": int,
           "val_error": Number | None, "params": Number | None, "macs": Number | None, "started": Number | None,
           "time": Number | None},
    required=("number",),
)
#: The fields of ``scheduler.jsonl`` (one rung decision a line) that a resumed scheduler replays.
SCHEDULER_SCHEMA = LogSchema(
    types={"milestone": int, "trial_id": str, "values": list[Number], "stopped": bool},
    required=("milestone", "trial_id", "values", "stopped"),
)

_log = logging.getLogger(__name__)
#: Warnings given already: a poller (the live dashboard) re-reads the same bad line every few seconds.
_warned: set[str] = set()


def read_jsonl(path: Path, schema: LogSchema | None = None) -> list[dict]:
    """All complete records of a JSONL log that are JSON objects and fit ``schema``.

    A line torn by a kill is skipped silently; any other bad line (corruption, a hand edit) is
    skipped with one warning per log, so one bad line never hides a whole run.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records, bad = [], []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):  # torn by a kill (mid-character, too)
            continue
        except RecursionError:
            record, problem = None, "nested too deeply"
        except ValueError:  # Python reads no integer of over 4300 digits
            record, problem = None, "a number too long to read"
        else:
            problem = "not a JSON object" if not isinstance(record, dict) else schema and schema.problem(record)
        if problem:
            bad.append(f"line {number}: {problem}")
        else:
            records.append(record)
    if bad:
        _warn_once(f"wrn-search: warning: {path}: skipped {len(bad)} bad line(s) ({bad[0]})")
    return records


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        _log.warning(message)


def _has_type(value: typing.Any, hint: typing.Any) -> bool:
    """Whether a JSON value has the annotated type: a union, ``list[X]``, None or a class (a bool is no int)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, member) for member in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_has_type(member, item) for member in value)
    if hint is type(None):
        return value is None
    if hint is int:
        return is_int(value) and INT64_MIN <= value <= INT64_MAX
    if hint is float and is_int(value):  # an integer where a float belongs must be one (10**400 is not)
        return abs(value) <= FLOAT_MAX
    return isinstance(value, hint)


def _type_name(hint: typing.Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


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


#: What an epoch's training produced: a line equal in these is the same epoch reported again.
TRAINED_KEYS = tuple(key for key in EPOCH_KEYS if key != "node_id")


class EpochLog:
    """``epochs.jsonl``, appended once per trained epoch of a study trial.

    A trial that finished just before a driver kill reports its last epoch again when the run resumes:
    the same line, not logged twice. An epoch trained again (a trial restored from an older checkpoint
    than its newest) is logged again with ``"retrained": true``; readers keep the last line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._logged: dict[tuple, str] = {}
        self._highest: dict = {}  # study trial -> its highest logged epoch
        for record in read_jsonl(self.path, EPOCH_SCHEMA):
            self._remember(record)

    def missing(self, record: dict, start: int = 0) -> range:
        """The epochs between the trial's highest logged one (or ``start``, the epoch a trial continuing one
        stopped early began from) and ``record``'s: a kill or a full disk between a trial's checkpoint and the
        driver's line loses that line, and the trial then continues from the checkpoint."""
        trial, epoch = _epoch_key(record)
        return range(self._highest.get(trial, start) + 1, epoch)

    def append(self, record: dict) -> bool:
        """Log ``record`` (fsynced) unless the same epoch was logged with the same results; whether it was."""
        key, trained = _epoch_key(record), _trained(record)
        if key in self._logged:
            if self._logged[key] == trained:
                return False
            record = {**record, "retrained": True}
        append_jsonl(self.path, record)
        self._remember(record)
        return True

    def _remember(self, record: dict) -> None:
        trial, epoch = key = _epoch_key(record)
        self._logged[key] = _trained(record)
        self._highest[trial] = max(self._highest.get(trial, epoch), epoch)


def _epoch_key(record: dict) -> tuple:
    """The study trial (Ray's trial id where there is no study number) and epoch a line is about."""
    number = record.get("number")
    return (record["trial_id"] if number is None else number, record["epoch"])


def _trained(record: dict) -> str:
    """What the epoch's training produced, as JSON (NaN equals NaN there)."""
    return json.dumps([record.get(key) for key in TRAINED_KEYS], default=_jsonable)


@dataclass
class EpochsSpent:
    """The epochs each Ray trial trained, counted against ``search.epoch_budget``: from the epoch before its
    first report to its highest. A re-run from a checkpoint reports epochs again, and they count once; a trial
    that continues one stopped early first reports the epoch after that trial's, and counts only what it trained.
    """

    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    def count(self, trial_id: str, epoch: int | None) -> None:
        if epoch is None:
            return
        first, highest = self.spans.get(trial_id, (int(epoch) - 1, 0))
        self.spans[trial_id] = (min(first, int(epoch) - 1), max(highest, int(epoch)))

    @property
    def total(self) -> int:
        return sum(highest - first for first, highest in self.spans.values())

    @classmethod
    def read(cls, run_dir: str | Path) -> EpochsSpent:
        """What ``epochs.jsonl`` says: the durable log, newer than Tune's snapshot."""
        spent = cls()
        for record in read_jsonl(Path(run_dir) / EPOCH_LOG, EPOCH_SCHEMA):
            spent.count(record["trial_id"], record["epoch"])
        return spent


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
