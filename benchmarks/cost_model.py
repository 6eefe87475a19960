"""Cost model: closed-form params + MACs of a WRN spec vs building the model and counting.

The baseline is what a user would do without a cost model: instantiate the
network, sum ``numel()`` over its parameters and count a one-image forward
pass with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2 = MACs).
The two must agree exactly on every spec.
"""

from __future__ import annotations

import itertools
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from wrn_search.network.model import build_model
from wrn_search.network.spec import WRNSpec

from .common import Row, describe_device, log, median_time, pin_threads, speedup

KERNELS = [(3, 3), (3, 1, 3), (1, 3), (3, 3, 3)]


def specs(count: int) -> list[WRNSpec]:
    """``count`` specs cycling through N = 1..4, k = 1..4 and the block types (up to WRN-40-4-sized nets)."""
    grid = itertools.product((1, 2, 3, 4), (1, 2, 3, 4), KERNELS)
    return [WRNSpec(n, k, kernels) for (n, k, kernels), _ in zip(itertools.cycle(grid), range(count))]


def closed_form(spec: WRNSpec) -> tuple[int, int]:
    return spec.num_params(), spec.macs()


def instantiated(spec: WRNSpec) -> tuple[int, int]:
    """Build, count parameters, count a forward pass of one 32x32 image."""
    model = build_model(spec).eval()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    return params, counter.get_total_flops() // 2


def rate(count_fn, pool: list[WRNSpec], repeats: int) -> float:
    """Specs per second: median over ``repeats`` passes over ``pool`` after one warm-up pass."""
    return len(pool) / median_time(lambda: [count_fn(spec) for spec in pool], repeats)


def run(quick: bool = False, threads: int | None = None, count: int | None = None) -> Row:
    threads = pin_threads(threads)
    count = count or (16 if quick else 64)
    repeats = 3 if quick else 5
    pool = specs(count)
    log(f"cost_model: {count} specs x {repeats} repeats")
    start = time.perf_counter()
    agree = all(closed_form(spec) == instantiated(spec) for spec in pool)
    ours_rate, base_rate = rate(closed_form, pool, repeats), rate(instantiated, pool, repeats)
    workload = (f"{count} specs ({pool[0].name} .. {max(pool, key=WRNSpec.num_params).name}, 4 block types), "
                f"params + MACs at 32x32 / 10 classes, median of {repeats} passes after 1 warm-up; baseline: "
                "build_model + sum(numel) + FlopCounterMode forward of one image")
    return Row("cost_model", ours_rate, base_rate, "specs/s", speedup(ours_rate, base_rate, True),
               describe_device(torch.device("cpu"), threads), workload, {"counts_agree_on_every_spec": agree},
               {"threads": threads, "specs": count, "seconds": time.perf_counter() - start})
