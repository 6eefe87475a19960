"""The errors a command ends with, and the exit code of each (torch- and Ray-free).

The CLI maps them in one place (``wrn_search.cli.main``): every :class:`WrnSearchError` exits with its
``exit_code`` and one line; :class:`SearchInterrupted` with 128 + the signal. Bad input and the run-level
refusals are also ``ValueError`` and the storage faults ``OSError``, so callers of the Python API
can catch them as the builtins they are.
"""

from __future__ import annotations

import signal


class WrnSearchError(Exception):
    """Base of wrn-search's own errors; the message is one line that says what to do."""

    exit_code = 2


class BadInput(WrnSearchError, ValueError):
    """A field, a file or a name the user gave is not allowed; the message names it and what is allowed.
    Raised before anything is written."""


class RunBusy(WrnSearchError, ValueError):
    """Another process holds the run directory."""


class RunDamaged(WrnSearchError, ValueError):
    """A file the run keeps (its study, a checkpoint, its logs) cannot be read or does not belong to it."""


class RunDirUnwritable(WrnSearchError, OSError):
    """The run directory or Tune's storage could not be written (disk full, read-only); finished work is kept."""


class ClusterUnreachable(WrnSearchError, ConnectionError):
    """The Ray cluster named by ``--address`` cannot be reached or joined."""


class SearchStalled(WrnSearchError, RuntimeError):
    """A search sat with nothing running and nothing offered; the message says how to continue."""

    exit_code = 1


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended the search; the message says what finished and how to continue
    (exit 128 + ``signum``: 130 or 143)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


def first_line(error: BaseException) -> str:
    """An error as one line: its message's first line, or its type's name when it has no message."""
    return str(error).partition("\n")[0] or type(error).__name__
