"""Shared pieces of the benchmarks: the result row, timing, thread pinning, device names, Ray start/stop.

Every benchmark returns one :class:`Row` with ours and the baseline measured in
the same process, so the ratio compares like with like on a noisy machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One benchmark's result; ``ratio`` > 1 means ours is better, whatever the unit's direction."""

    name: str
    ours: float
    baseline: float
    unit: str
    ratio: float
    device: str
    workload: str
    checks: dict[str, bool] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def speedup(ours: float, baseline: float, higher_is_better: bool) -> float:
    """How many times better ours is (throughputs: ours/baseline; times: baseline/ours)."""
    if higher_is_better:
        return ours / baseline if baseline else float("inf")
    return baseline / ours if ours else float("inf")


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pin_threads(threads: int | None) -> int:
    """Set torch's intra-op threads explicitly (oversubscribed OpenMP is 20-50x slower); returns the count."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def benchmark_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device, threads: int) -> str:
    """``NVIDIA H100 ...`` or ``cpu x2 threads (avx512_bf16)``: what the row was measured on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    flags = [name for name, check in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
             if getattr(torch.cpu, check, lambda: False)()]
    return f"cpu, {threads} threads of {os.cpu_count()} cores" + (f" ({', '.join(flags)})" if flags else "")


def start_ray(num_gpus: int | None = None) -> None:
    """A private local Ray on 127.0.0.1 whose workers can import this package (by PYTHONPATH, inherited
    from here); ``num_gpus`` tells Ray of that many GPUs, whatever the node has."""
    import ray

    from wrn_search.search.cluster import LOOPBACK, loopback_kept

    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    with loopback_kept():  # "local": never join a cluster another process left running
        ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=num_gpus, include_dashboard=False,
                 logging_level="ERROR", log_to_driver=False, _node_ip_address=LOOPBACK)


def stop_ray() -> None:
    import ray

    ray.shutdown()


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
