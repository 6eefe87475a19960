"""The run's Optuna study storage: opened for the one writer (the driver) or read-only for every reader,
a journal's torn last record cut, and a damaged or foreign SQLite file refused with one line.

A journal file (``study.log``) is the default; SQLite and any SQLAlchemy URL work through ``--study-storage``.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from wrn_search.errors import RunDamaged, first_line
from wrn_search.runs.files import _log
from wrn_search.runs.journal import GroupCommitJournalBackend
from wrn_search.runs.layout import OPTUNA_STUDY_TABLE, STUDY_FILE, STUDY_JOURNAL, RunManifest


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

            if read_only and not Path(url).is_file():
                raise RunDamaged(f"study-storage: {url} does not exist (no study yet?)")
            if not read_only:
                cut_torn_record(Path(url))
            return optuna.storages.JournalStorage(GroupCommitJournalBackend(url))  # fsynced per decision
        if not read_only:
            _check_sqlite_file(_sqlite_path(url))
        return optuna.storages.RDBStorage(_read_only_url(url) if read_only else url, skip_table_creation=read_only)
    except RunDamaged:
        raise
    except Exception as error:  # SQLAlchemy raises many kinds; all mean "cannot open"
        reason = first_line(error)
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


def _damaged(path: Path, detail: object) -> RunDamaged:
    return RunDamaged(f"study-storage: {path} is damaged ({detail}); restore it from a backup, or save what "
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
        raise RunDamaged(f"study-storage: {path} does not exist (no study yet?)")
    uri = path.resolve().as_uri()
    try:
        with closing(sqlite3.connect(f"{uri}?mode=ro", uri=True)) as database:
            tables = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if OPTUNA_STUDY_TABLE in tables:
                _check_intact(database, path)
    except sqlite3.Error as error:
        name = getattr(error, "sqlite_errorname", None)
        if name == "SQLITE_READONLY_ROLLBACK":
            raise RunDamaged(f"study-storage: {path} holds a transaction cut by a kill, which only a writer rolls "
                             f"back (`wrn-search resume`, or `sqlite3 {path} 'PRAGMA quick_check'`)") from None
        if name == "SQLITE_CORRUPT":
            raise _damaged(path, error) from None
        raise RunDamaged(f"study-storage: {path} is not a readable SQLite database ({error})") from None
    if OPTUNA_STUDY_TABLE not in tables:
        raise RunDamaged(f"study-storage: {path} holds no Optuna study ({path.stat().st_size} bytes, "
                         f"no {OPTUNA_STUDY_TABLE!r} table)")
    parsed = make_url(url)
    query = {**parsed.query, "mode": "ro", "uri": "true"}
    return URL.create(parsed.drivername, database=uri, query=query).render_as_string(hide_password=False)


def study_storage(run_dir: Path, manifest: RunManifest) -> str:
    """The recorded storage, or the run's own study file when the recorded one is gone (a moved or copied run):
    ``study.log`` for a journal study, ``study.db`` for a SQLite one (runs made before the journal default)."""
    prefix = "sqlite:///"
    storage = manifest.storage
    if storage.startswith(prefix):
        recorded, own, url = Path(storage[len(prefix):]), run_dir / STUDY_FILE, prefix + str(run_dir / STUDY_FILE)
    elif "://" not in storage:
        recorded, own, url = Path(storage), run_dir / STUDY_JOURNAL, str(run_dir / STUDY_JOURNAL)
    else:
        return storage
    return url if not recorded.exists() and own.exists() else storage


def open_run_storage(run_dir: Path, manifest: RunManifest):
    """The run's Optuna storage (SQLite, any SQLAlchemy URL, or a journal file), opened read-only."""
    return open_storage(study_storage(run_dir, manifest), read_only=True)


@functools.lru_cache(maxsize=8)
def _reading_storage(url: str):
    """One read-only storage (one database engine) per URL for readers that poll, like the live dashboard."""
    return open_storage(url, read_only=True)


def open_study(run_dir: Path, manifest: RunManifest):
    """The run's study, read-only: a missing or empty study file is an error, never created or written."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(run_dir, manifest)
    try:
        return optuna.load_study(study_name=manifest.study_name, storage=_reading_storage(storage))
    except KeyError:
        raise ValueError(f"run_dir: study {manifest.study_name!r} is not in {storage}") from None
