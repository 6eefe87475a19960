"""Faults of the disk under a running search, on real filesystems: a full one (a tmpfs of its own) and a run
directory turned read-only. Each ends in one line and exit 2, and ``resume`` then finishes the run; and a killed
trial worker, which costs no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from search_helpers import run_cli, study_of, wait_for, write_space
from test_resume import kill_group, reached

from wrn_search.runs.files import read_jsonl

pytestmark = pytest.mark.slow

#: Root without the capabilities that let it write whatever the permission bits say: a read-only run
#: directory is read-only for it (``setpriv``, util-linux).
WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
SAMPLES, EPOCHS = 4, 4


def start(tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """``wrn-search ARGS`` in its own process group (the Ray processes it starts join it), output captured."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "wrn_search", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    """Wait for ``process``; its stderr. Whatever it started that outlived it is killed."""
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        kill_group(process)
    return stderr


@pytest.fixture
def small_filesystem(tmp_path) -> Iterator[Path]:
    """A 64 MiB tmpfs of its own under ``tmp_path``, unmounted after (mounting needs root: skipped without)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                                           check=False, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False, capture_output=True).returncode:
            subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem has no room left."""
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(bytes(1 << 16))
        except OSError:
            pass


def set_writable(directory: Path, writable: bool) -> None:
    """Take write permission from everything in ``directory``, or give it back to the owner."""
    for path in [directory, *directory.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o200 if writable else mode & ~0o222)


def tear_snapshot(tune_dir: Path) -> None:
    """Cut the newest experiment state in half, as a copy onto a full disk leaves it."""
    state = max(tune_dir.glob("experiment_state-*.json"))
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])


def is_trial_worker(process: psutil.Process) -> bool:
    try:
        return "ImplicitFunc" in " ".join(process.cmdline())
    except psutil.Error:  # gone meanwhile
        return False


def assert_one_line(stderr: str, command: str, run_dir: Path, reason: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-4000:]
    assert lines[0].startswith(f"wrn-search {command}: error: run_dir: cannot write {run_dir}"), lines[0]
    assert f"({reason}); finished trials are kept" in lines[0], lines[0]
    assert lines[0].endswith(f"continue with `wrn-search resume {run_dir}`"), lines[0]


def assert_finished(tmp_path: Path, run_dir: Path) -> None:
    """``resume`` ends the run: exit 0, no traceback, every trial COMPLETE, none beyond the budget, and every
    epoch of every trial in ``epochs.jsonl`` once (or marked trained again)."""
    resumed = run_cli("resume", str(run_dir), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Traceback" not in resumed.stderr, resumed.stderr[-4000:]
    trials = study_of(run_dir).trials
    assert len(trials) == SAMPLES and all(t.state.name == "COMPLETE" for t in trials), \
        [(t.number, t.state.name) for t in trials]
    records = read_jsonl(run_dir / "epochs.jsonl")
    logged = Counter((r["number"], r["epoch"]) for r in records if not r.get("retrained"))
    assert set(logged) == {(t.number, e) for t in trials for e in range(1, EPOCHS + 1)}
    assert max(logged.values()) == 1, [key for key, count in logged.items() if count > 1]


@pytest.mark.parametrize("study", ["default", "sqlite"])
def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(tmp_path, small_filesystem, study):
    """Fill the run's filesystem once a trial finished: one line, exit 2; Ray's snapshot torn as a full disk
    leaves it; free the space: ``resume`` finishes the run (SQLite's "database or disk is full" included)."""
    space = write_space(tmp_path, training={"epochs": EPOCHS}, search={"samples": SAMPLES, "scheduler": "none"})
    run_dir = small_filesystem / "full"
    storage = ["--study-storage", f"sqlite:///{small_filesystem / 'study.db'}"] if study == "sqlite" else []
    driver = start(tmp_path, "run", str(space), "--name", "full", "--storage-path", str(small_filesystem), "--quiet",
                   *storage)
    filler = small_filesystem / "filler"
    try:
        wait_for(lambda: len(read_jsonl(run_dir / "trials.jsonl")) >= 1, 300, "a finished trial")
        fill(filler)
    finally:
        stderr = finish(driver)
    assert driver.returncode == 2, stderr[-4000:]
    assert_one_line(stderr, "run", run_dir, os.strerror(28))
    tear_snapshot(run_dir / "tune")
    filler.unlink()
    assert_finished(tmp_path, run_dir)


def test_a_run_directory_turned_read_only_stops_the_run_in_one_line_and_resume_finishes_it(tmp_path):
    """Take write permission from the whole run directory once a trial finished (the driver runs as root without
    the capability that overrides it): one line, exit 2; make it writable again: ``resume`` finishes the run."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the capability that overrides permissions")
    space = write_space(tmp_path, training={"epochs": EPOCHS}, search={"samples": SAMPLES, "scheduler": "none"})
    run_dir = tmp_path / "runs" / "ro"
    driver = start(tmp_path, "run", str(space), "--name", "ro", "--storage-path", "runs", "--quiet",
                   prefix=tuple(WITHOUT_OVERRIDE))
    try:
        wait_for(lambda: len(read_jsonl(run_dir / "trials.jsonl")) >= 1, 300, "a finished trial")
        set_writable(run_dir, False)
    finally:
        stderr = finish(driver)
        set_writable(run_dir, True)
    assert driver.returncode == 2, stderr[-4000:]
    assert_one_line(stderr, "run", run_dir, os.strerror(13))
    assert_finished(tmp_path, run_dir)


def test_a_killed_worker_prints_no_traceback(tmp_path):
    """SIGKILL the worker training a trial of a ``--quiet`` run: no traceback (Ray printed ActorDiedError's,
    54 lines), the trial continues from its checkpoint and the run ends as usual."""
    space = write_space(tmp_path, training={"epochs": 6}, search={"samples": 2, "scheduler": "none",
                                                                  "max_concurrent": 1})
    run_dir = tmp_path / "runs" / "killed"
    driver = start(tmp_path, "run", str(space), "--name", "killed", "--storage-path", "runs", "--quiet")
    try:
        wait_for(lambda: reached(run_dir).get(0, 0) >= 2, 300, "trial 0 at epoch 2")
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True) if is_trial_worker(p)]
        for worker in workers:
            worker.kill()
    finally:
        stderr = finish(driver)
    assert workers, "no trial worker of this run was found to kill"
    assert driver.returncode == 0, stderr[-4000:]
    assert "Traceback" not in stderr and "ActorDiedError" not in stderr, stderr[-4000:]
    trials = study_of(run_dir).trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert list((run_dir / "tune").glob("00000-*/error.txt")), "Tune never saw the worker die"
