"""Failed trials on the driver: a disk that cannot be written stops the search, any other failure is one line.

A trial whose checkpoint cannot be written (the disk is full, or the run directory turned read-only)
would be retried, then told FAIL to the study, and every next trial would fail the same way; a later
``resume`` would run each of them again as a new trial, beyond ``--samples``. A study write that fails so
as a trial ends fails that trial the same way. :class:`TrialFailures` stops the search at the first such
failure instead, before the study hears of it, so the trial stays unfinished and ``resume`` continues it
from its checkpoint.

Ray's controller logs every failed trial task, and every error stopping one, with its traceback (a killed
worker's ``ActorDiedError`` is dozens of lines) just before it handles the failure. That record is where
the exception is (Ray keeps no other copy in memory), so :class:`TrialFailures` reads it there, and unless
``--verbose`` drops it: one line per failure is said instead, or nothing with ``--quiet``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ray import tune
from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

#: errno values meaning "no room or no right to write": the run can continue once that is fixed.
UNWRITABLE = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM)
#: SQLite's error names (``sqlite3.Error.sqlite_errorname``, extended ones such as ``SQLITE_IOERR_WRITE``
#: included) that mean the same for the study database, as the errno they stand for.
SQLITE_UNWRITABLE = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY": errno.EROFS, "SQLITE_IOERR": errno.EIO,
                     "SQLITE_CANTOPEN": errno.EACCES}
#: Ray's switch that silences errors of tasks whose result nobody read (the driver's trials as it stops).
RAY_UNHANDLED_ERRORS_ENV = "RAY_IGNORE_UNHANDLED_ERRORS"
#: The logger of Tune's controller, which logs each trial failure with its exception (Ray 2.60).
TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"


def sqlite_unwritable(error: BaseException) -> OSError | None:
    """The ``OSError`` a SQLite error stands for when it means the database cannot be written, if it does."""
    name = getattr(error, "sqlite_errorname", None) if isinstance(error, sqlite3.Error) else None
    for prefix, code in SQLITE_UNWRITABLE.items():
        if name == prefix or (name or "").startswith(prefix + "_"):
            return OSError(code, str(error))
    return None


def unwritable_error(error: BaseException | None) -> OSError | None:
    """The disk-full or read-only error behind ``error``, if any: Tune wraps what its callbacks raise, Optuna
    wraps SQLite's errors (``StorageInternalError``), and Ray a trial's (``RayTaskError.cause``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in UNWRITABLE:
            return error
        if (sqlite := sqlite_unwritable(error)) is not None:
            return sqlite
        error = error.__cause__ or error.__context__ or remote_cause(error)
    return None


def remote_cause(error: BaseException) -> BaseException | None:
    """What a trial raised, inside the ``RayTaskError`` Ray hands the driver (None for any other error)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else None


def summary(error: BaseException | None) -> str:
    """``ActorDiedError: The actor died unexpectedly ...``: the failure's type and first line."""
    if error is None:
        return "an error Ray did not keep"
    error = remote_cause(error) or error  # a RayTaskError's own text repeats the remote traceback
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0].rstrip('.')}" if lines else type(error).__name__


class TrialFailures(tune.Callback, logging.Filter):
    """Stop the search when a trial failed for want of room or write permission; say other failures in one line.

    A filter on Tune's controller logger while :meth:`watching`: it keeps the exception of each error
    record, which the trial's ``on_trial_recover`` or ``on_trial_error`` that follows looks at. ``say``:
    print the line; ``tracebacks``: let Ray's records through (``--verbose``) instead.
    """

    def __init__(self, say: bool = True, tracebacks: bool = False):
        logging.Filter.__init__(self)
        self.say = say
        self.tracebacks = tracebacks
        #: The exception Tune logged last, for the failure it is about to handle.
        self.error: BaseException | None = None

    @contextmanager
    def watching(self) -> Iterator[TrialFailures]:
        controller = logging.getLogger(TUNE_CONTROLLER_LOGGER)
        controller.addFilter(self)
        try:
            yield self
        finally:
            controller.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.exc_info or record.exc_info[1] is None:
            return True
        self.error = record.exc_info[1]
        return self.tracebacks

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self.failed(trial, "retried from its checkpoint")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self.failed(trial, "recorded as failed (resume runs it again)")

    def failed(self, trial: Trial, then: str) -> None:
        error, self.error = self.error, None
        cause = unwritable_error(error)
        if cause is not None:
            if not self.tracebacks:  # the search stops: the trials it leaves fail the same way, unheard by Tune
                os.environ.setdefault(RAY_UNHANDLED_ERRORS_ENV, "1")
            raise cause
        if self.say:
            logger.warning("trial %s (%s) failed: %s; %s", trial.config.get("number"), trial.trial_id,
                           summary(error), then)
