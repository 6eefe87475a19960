"""Device and memory policy of one trainer: which device and precision, what an allocation failure
is, how a process that trains trial after trial gives memory back and recompiles.

Ray reuses worker processes, so everything here leaves the process as a fresh one would find it.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from wrn_search.errors import first_line
from wrn_search.training.recipe import BF16_CUDA_MAJOR

#: Bytes a parameter takes at least while training: fp32 weight, gradient and SGD momentum.
TRAIN_BYTES_PER_PARAM = 12
#: The batch dimension of ``WRN.forward``'s input ``x``, as ``torch.compiler.config.dynamic_sources`` names it.
BATCH_DIMENSION = "L['x']:0"
#: Allocation failures that arrive as a plain RuntimeError: the CPU allocator's (Linux and macOS; Windows), a
#: CUDA call outside PyTorch's caching allocator (a context, a stream), cuBLAS's and cuDNN's (v8; v9) own.
_ALLOCATION_FAILURE = re.compile(
    r"DefaultCPUAllocator: (?:can't allocate|not enough) memory"
    r"|(?:CUDA|HIP)(?: driver)? error: out of memory"
    r"|(?:CU|HIP)BLAS_STATUS_ALLOC_FAILED"
    r"|CUDNN_STATUS_(?:ALLOC_FAILED|INTERNAL_ERROR_(?:HOST|DEVICE)_ALLOCATION_FAILED)")


class OutOfMemory(RuntimeError):
    """Memory ran out outside ``fit``'s epochs (building the net, loading a checkpoint, evaluating): an outcome
    of training, like running out in an epoch (which ``fit`` reports), not a bug. The message is one line."""


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: CUDA's ``OutOfMemoryError``, :class:`OutOfMemory`, ``MemoryError``, or a ``RuntimeError``
    of the CPU allocator, CUDA, cuBLAS or cuDNN saying so: an outcome, not a crash to retry (it would recur)."""
    return isinstance(error, (torch.OutOfMemoryError, OutOfMemory, MemoryError)) or (
        isinstance(error, RuntimeError) and _ALLOCATION_FAILURE.search(str(error)) is not None)


@contextmanager
def out_of_memory_as(what: str) -> Iterator[None]:
    """Raise an allocation failure in the block as :class:`OutOfMemory`: "out of memory WHAT: its first line"."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if isinstance(error, OutOfMemory) or not is_out_of_memory(error):
            raise
        raise OutOfMemory(f"out of memory {what}: {first_line(error)}") from error


def free_device_memory() -> None:
    """Give the memory of trainers that are gone back to the GPU.

    PyTorch's allocator keeps freed blocks for its own process: a Ray actor that trains one
    trial after another would hold the last trial's peak, out of reach of the trials that
    share its GPU. Collect garbage first: a reference cycle can still hold tensors. A process
    without CUDA has nothing to give back (host memory returns as it is freed), so it skips the
    full collection, which costs about 0.25 s in a process that imported torch and Ray Tune: it was
    most of the gap between two CPU trials of a reused actor.
    """
    if torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def compile_for_trial(model: nn.Module, threads: int) -> nn.Module:
    """``torch.compile(model)`` for one of the trials a process trains in turn (Ray reuses actors).

    Dynamo allows 8 graphs per code object (``recompile_limit``), and every net shares
    ``WRN.forward``: without a reset the third net in a process fell back to eager with
    only a log warning. The reset is process-wide. With the batch dimension dynamic from
    the first batch, a trial needs two graphs (train, eval) instead of a static one, a
    dynamic one after the last partial batch, and eval's. Inductor compiles with at most
    ``threads`` workers, not min(32, cores); it starts its pool once per process.
    """
    torch.compiler.reset()
    sources = torch.compiler.config.dynamic_sources
    if BATCH_DIMENSION not in sources.split(","):  # process-wide too; a user's own entries stay
        torch.compiler.config.dynamic_sources = ",".join(filter(None, (sources, BATCH_DIMENSION)))
    return torch.compile(model, options={"compile_threads": threads})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve "auto": "bf16" on GPUs and CPUs with native bf16 (Ampere+, AVX512-BF16, AMX), else "fp32"."""
    if precision != "auto":
        return precision
    if device.type == "cuda":  # native bf16 from Ampere (compute capability 8) on; ROCm GPUs have it
        native = torch.version.hip is not None or torch.cuda.get_device_properties(device).major >= BF16_CUDA_MAJOR
        return "bf16" if native else "fp32"
    if device.type == "cpu":
        native = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return "bf16" if any(check() for check in native if check is not None) else "fp32"
    return "fp32"
