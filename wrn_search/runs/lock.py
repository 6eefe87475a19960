"""One writer per run directory: ``run`` and ``resume`` hold an exclusive lock while they work.

The lock is ``fcntl.flock`` on ``RUN_DIR/.lock``: the kernel drops it when the holding
process exits, however it exits (a kill included), so a stale lock never blocks. The
file names the holder (pid, host, command, since) for the refusal message; its
contents are advisory, the flock is what counts.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from wrn_search.errors import RunBusy

LOCK_FILE = ".lock"
#: A holder record is one short JSON line; more than this is not one.
HOLDER_MAX_BYTES = 4096



def holder_text(path: Path) -> str:
    """Who holds the lock, in words, from what the holder wrote (a torn record still names the file)."""
    try:
        holder = json.loads(path.read_text())
        return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since {holder['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return f"another process (see {path})"


@contextmanager
def run_dir_lock(run_dir: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold ``run_dir`` for the block; raise :class:`RunBusy` at once if another process holds it.

    A block that refuses (raises ``ValueError``: bad input, a damaged run) leaves the lock file as it found
    it: its holder record restored, or the file removed if this call created it, so a refusal writes nothing.
    """
    path = Path(run_dir) / LOCK_FILE
    try:
        descriptor, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        descriptor, created = os.open(path, os.O_RDWR), False
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"run_dir: {Path(run_dir)} is in use by {holder_text(path)}; wait for it to end "
                          "or stop it, then try again") from None
        previous = os.pread(descriptor, HOLDER_MAX_BYTES, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": command or " ".join(["wrn-search", *sys.argv[1:2]]),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield
        except ValueError:
            if created:
                path.unlink(missing_ok=True)  # still held: a process that opens it now finds no file
            else:
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, previous, 0)
            raise
    finally:
        os.close(descriptor)  # releases the flock
