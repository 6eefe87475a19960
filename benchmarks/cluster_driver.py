"""Cluster driver: trial starts per second one wrn-search driver sustains on a real Ray cluster, and its CPU share.

``decision_latency`` times the driver's decisions in a simulation; this runs the real thing on this
machine: a ``ray start --head`` node on 127.0.0.1 (real Ray processes with token authentication,
as in the README's cluster recipe; Ray's single-machine switch, which keeps it on loopback, refuses
a second node on the same machine), and ``wrn-search run --address`` as its own
process with ``CONCURRENT`` trials at once (fractional CPUs declared, so 2 real cores carry them), tiny nets on
digits, one epoch each, no early stopping. The trials are cheap, so the driver's per-trial work
(suggest, Tune's trial bookkeeping, the tell, the logs) is a large share of the whole.

Trial starts/s: trials started (``trials.jsonl``'s ``started``) after the first wave of
``CONCURRENT`` (whose actors start from nothing), over the seconds they span. CPU share: the driver
process's CPU seconds (user + system, its threads included) over its wall seconds; 1.0 is one core.
There is no baseline: the row is a check of the driver, its ratio NaN.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import torch
import yaml

from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import TRIAL_LOG

from .common import REPO_ROOT, Row, describe_device, log

#: Trials at once. Each is a Ray actor process with torch imported, about 270 MB of its own on this machine:
#: 64 of them (17 GB) do not fit beside the other work of a shared 23 GB machine; 24 do.
CONCURRENT = 24
#: CPUs the node declares; with ``CPUS_PER_TRIAL`` it holds ``CONCURRENT`` trials.
NODE_CPUS = 12
CPUS_PER_TRIAL = 0.5
TRIALS = {False: 256, True: 128}
READY = "Ray runtime started."
#: Ray's switch that binds a single-machine cluster to 127.0.0.1.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def space_document(trials: int) -> dict:
    """256 distinct cheap configurations (8 tiny WRN-10s x 4 dropouts x 8 lrs), one epoch each."""
    return {
        "dimensions": {"blocks_per_group": [1], "widen_factor": [0.125, 0.25, 0.375, 0.5],
                       "block_types": ["B(3,3)", "B(3,1)"], "dropout": [0.0, 0.1, 0.2, 0.3],
                       "lr": [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4]},
        "dataset": {"name": "digits"},
        "training": {"epochs": 1, "batch_size": 128, "num_threads": 1},
        "search": {"objectives": ["val_error", "params"], "scheduler": "none", "samples": trials,
                   "max_concurrent": CONCURRENT, "seed": 0},
        "resources": {"cpus_per_trial": CPUS_PER_TRIAL, "gpus_per_trial": 0},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM (``ray start --block`` then stops its node), then SIGKILL by pid for whatever it left."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=20)
    for leftover in alive:
        leftover.kill()


@contextlib.contextmanager
def loopback_cluster(directory: Path, env: dict[str, str]) -> Iterator[str]:
    """A head node (``ray start --head ... --block``, a process group this process ends) on 127.0.0.1; yields its
    address."""
    port = free_port()
    log_path = directory / "head.log"
    with log_path.open("w") as out:
        head = subprocess.Popen(["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
                                 f"--num-cpus={NODE_CPUS}", "--num-gpus=0", "--node-ip-address=127.0.0.1", "--block"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while READY not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head)


def user_env(home: Path, ray_tmp: Path) -> dict[str, str]:
    """Its own token (``HOME``) and Ray temp dir, token auth for joining, this package importable everywhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH") and key != "RAY_ADDRESS"}
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="token",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}", PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)),
               **LOOPBACK_ONLY)
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ray", "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    return env


def drive(directory: Path, env: dict[str, str], address: str, trials: int) -> dict:
    """``wrn-search run --address`` as its own process; its wall and CPU seconds and the trials' start times."""
    space = directory / "cluster-driver.yaml"
    space.write_text(yaml.safe_dump(space_document(trials)))
    command = [sys.executable, "-m", "wrn_search", "run", str(space), "--name", "driver", "--storage-path",
               str(directory / "runs"), "--address", address, "--quiet"]
    start = time.perf_counter()
    with (directory / "driver.log").open("w") as out:
        driver = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
        watched = psutil.Process(driver.pid)
        cpu = watched.cpu_times()
        while driver.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                cpu = watched.cpu_times()
            time.sleep(0.2)
    wall = time.perf_counter() - start
    if driver.returncode != 0:
        raise RuntimeError(f"wrn-search run failed: {(directory / 'driver.log').read_text()[-3000:]}")
    lines = read_jsonl(directory / "runs" / "driver" / TRIAL_LOG)
    return {"wall_s": wall, "cpu_s": cpu.user + cpu.system, "started": sorted(line["started"] for line in lines),
            "ended": sorted(line["time"] for line in lines),
            "completed": sum(line["state"] == "COMPLETE" for line in lines)}


def most_running(started: list[float], ended: list[float]) -> int:
    """The most trials between their start and their end at one moment."""
    events = sorted([(t, 1) for t in started] + [(t, -1) for t in ended])
    return int(max(np.cumsum([step for _, step in events])))


def run(quick: bool = False, threads: int | None = None) -> Row:
    trials = TRIALS[quick]
    log(f"cluster_driver: {trials} trials, {CONCURRENT} at once, on a ray start head")
    directory = Path(tempfile.mkdtemp(prefix="wrn-cluster-"))
    try:
        env = user_env(directory / "home", directory / "ray")
        with loopback_cluster(directory, env) as address:
            measured = drive(directory, env, address, trials)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    started = measured["started"]
    steady = started[CONCURRENT:]
    starts_per_s = (len(steady) - 1) / (steady[-1] - steady[0])
    cpu_share = measured["cpu_s"] / measured["wall_s"]
    running = most_running(started, measured["ended"])
    checks = {f"all_{trials}_trials_complete": measured["completed"] == trials,
              f"{CONCURRENT}_trials_ran_at_once": running >= CONCURRENT}
    workload = (f"{'QUICK MODE: fewer trials, ' if quick else ''}{trials} trials of 8 tiny WRN-10s (k 0.125-0.5, "
                f"B(3,3)/B(3,1)) x dropout x lr on digits, 1 epoch, batch 128, 1 thread, no early stopping, TPE; "
                f"{CONCURRENT} at once ({CPUS_PER_TRIAL} CPU each); a `ray start --head` node on 127.0.0.1 "
                f"declaring {NODE_CPUS} CPUs on {os.cpu_count()} real cores, token auth; the driver is `wrn-search run "
                f"--address` in its own process; starts/s over the {len(steady)} trials after the first "
                f"{CONCURRENT}; driver CPU {measured['cpu_s']:.0f} s over {measured['wall_s']:.0f} s wall "
                f"({cpu_share:.0%} of one core); at most {running} trials at once")
    details = {**{key: value for key, value in measured.items() if key not in ("started", "ended")},
               "starts_per_s": starts_per_s, "driver_cpu_share": cpu_share, "most_running": running,
               "first_wave_s": started[CONCURRENT - 1] - started[0] if len(started) >= CONCURRENT else None}
    return Row("cluster_driver", starts_per_s, float("nan"), "trial starts/s (no baseline)", float("nan"),
               f"{describe_device(torch.device('cpu'), 1)}; real Ray cluster (ray start) on loopback",
               workload, checks, details)
