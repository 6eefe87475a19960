"""The run's Optuna journal file, fsynced once per driver decision instead of once per record.

Optuna's ``JournalFileBackend`` fsyncs after every record, and one ``suggest`` writes about twenty
(the new trial, each parameter, each user attribute): at about 2 ms an fsync that was most of a
suggest's time (benchmarks/README.md, ``decision_latency``). Inside :func:`one_sync` the records are
written and flushed to the file at once, as before, and fsynced together when the block ends.

What a kill of the driver leaves is unchanged: every record is in the file (the operating system's
cache) the moment it is written, so ``resume`` and every reader see it. Only a crash of the whole
machine before the block ends can lose the block's records, which is what a crash a moment earlier
would have lost: a decision is durable when the driver's call returns, as before. Outside a block,
each record is fsynced as Optuna does.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file


class GroupCommitJournalBackend(JournalFileBackend):
    """``JournalFileBackend`` whose records written inside :meth:`deferred` share one fsync at its end."""

    def __init__(self, file_path: str, lock_obj=None) -> None:
        super().__init__(file_path, lock_obj)
        self._depth = 0
        self._unsynced = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._depth, self._unsynced = 0, False  # a searcher is saved between decisions

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not self._depth:
            super().append_logs(logs)
            return
        # Optuna's append without its fsync: the same lock, the same bytes, flushed to the file.
        with get_lock_file(self._lock):
            text = "\n".join([json.dumps(log, separators=(",", ":")) for log in logs]) + "\n"
            with open(self._file_path, "ab") as file:
                file.write(text.encode("utf-8"))
        self._unsynced = True

    def sync(self) -> None:
        """fsync what was appended since the last sync."""
        if self._unsynced:
            with open(self._file_path, "rb") as file:
                os.fsync(file.fileno())
            self._unsynced = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self.sync()


def one_sync(storage: BaseStorage | None):
    """A context in which ``storage``'s journal records are fsynced once, at its end; any other storage
    (SQLite, an RDB, in memory, a journal opened by an older wrn-search) is left as it is."""
    backend = getattr(storage, "_backend", None) if isinstance(storage, JournalStorage) else None
    return backend.deferred() if isinstance(backend, GroupCommitJournalBackend) else nullcontext()


def synced_once(method: Callable) -> Callable:
    """A searcher method (one driver decision) whose study records share one fsync (:func:`one_sync`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with one_sync(getattr(getattr(self, "_ot_study", None), "_storage", None)):
            return method(self, *args, **kwargs)

    return wrapper
