"""Crash-safe files: atomic rewrites, fsynced appends, and JSONL logs read back with a schema.

A kill can tear the last line of a log; a hand edit or a disk fault can damage any line. Readers skip
such lines (saying so once) instead of refusing the run.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
import sys
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from wrn_search.checks import is_int

#: A JSON number (``NaN`` and ``Infinity`` included): an integer that a float holds, or a float.
Number = float
#: The integers an ``int`` field may hold (pandas keeps counts as int64); JSON allows any number of digits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_log = logging.getLogger(__name__)
#: Warnings given already: a poller (the live dashboard) re-reads the same bad line every few seconds.
_warned: set[str] = set()


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
            if key in record and not has_type(record[key], hint):
                return f"{key!r} must be {type_name(hint)}, got {reprlib.repr(record[key])}"
        return None


#: The largest integer a float holds (``float(10**400)`` raises OverflowError).
FLOAT_MAX = int(sys.float_info.max)


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


def has_type(value: typing.Any, hint: typing.Any) -> bool:
    """Whether a JSON value has the annotated type: a union, ``list[X]``, None or a class (a bool is no int)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(has_type(value, member) for member in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(has_type(member, item) for member in value)
    if hint is type(None):
        return value is None
    if hint is int:
        return is_int(value) and INT64_MIN <= value <= INT64_MAX
    if hint is float and is_int(value):  # an integer where a float belongs must be one (10**400 is not)
        return abs(value) <= FLOAT_MAX
    return isinstance(value, hint)


def type_name(hint: typing.Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
