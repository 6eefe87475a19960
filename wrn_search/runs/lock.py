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



def holder_text(path: Path) -> str:
    """Who holds the lock, in words, from what the holder wrote (a torn record still names the file)."""
    try:
        holder = json.loads(path.read_text())
        return (f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since {holder['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return f"another process (see {path})"


@contextmanager
def run_dir_lock(run_dir: str | Path, command: str | None = None) -> Iterator[None]:
    """Hold ``run_dir`` for the block; raise :class:`RunBusy` at once if another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusy(f"run_dir: {Path(run_dir)} is in use by {holder_text(path)}; wait for it to end "
                          "or stop it, then try again") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": command or " ".join(["wrn-search", *sys.argv[1:2]]),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the flock
