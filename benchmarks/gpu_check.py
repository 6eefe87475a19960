"""The GPU check: ``python benchmarks/gpu_check.py`` runs on one GPU what the CPU tests can only mock.

About 5 minutes on one GPU. Prints one JSON line per observation, ``{"section", "observation",
...values, "ok"}`` (``ok`` where there is something to check); a section that raises prints
``{"section", "error"}`` and the next section runs. Exit status 1 if a section failed or a check
is false. Without CUDA it prints ``skipped: no CUDA`` and exits 0. Sections:

- ``environment``: versions and the GPU; the driver's NVML reading creates no CUDA context;
  the CUDA context's size against what the memory caps set aside for it;
- ``train``: 3 epochs of WRN-16-4 in bf16 + channels_last, host syncs counted per epoch;
- ``memory``: peak memory of WRN-16-4 and WRN-28-10 in bf16 and fp32 against the cost model's
  estimate and the cap of the share ``gpus_per_trial: auto`` gives them;
- ``out_of_memory``: WRN-28-10 too big for a small cap, building and at batch 4096, is an
  outcome; the memory is freed and the next trial in the process trains;
- ``checkpoint``: a GPU checkpoint resumed on the CPU, and that one back on the GPU;
- ``compile``: torch.compile across four architectures in one process, none falling back to eager;
- ``ray``: four 0.25-GPU Ray trials on one GPU, each seeing one device and its cap, and a
  zero-GPU trial on the CPU;
- ``train_step``: the train-step benchmark (images/s, fraction of a measured bf16 matmul peak).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from wrn_search.network.spec import WRNSpec  # noqa: E402
from wrn_search.search.resources import (
    BYTES_PER_ELEMENT,
    CUDA_CONTEXT_BYTES,
    DEFAULT_GPU,
    MARGIN_BYTES,
    AutoGPUResources,
    allocator_bytes,
    local_gpu,
    memory_fraction,
)
from wrn_search.training.data import Dataset, load_dataset  # noqa: E402
from wrn_search.training.device import OutOfMemory, free_device_memory
from wrn_search.training.engine import TrainConfig, Trainer  # noqa: E402

SKIPPED = "skipped: no CUDA"

#: ``emit(observation, **values)`` prints one JSON line of the running section.
Emit = Callable[..., None]


def synthetic(train: int, val: int = 0) -> Dataset:
    """CIFAR-shaped random images: nothing to download on a GPU machine."""
    data = load_dataset("synthetic", train_size=train, test_size=max(val, 1), val_fraction=0)
    return replace(data, val=data.test) if val else data


class _Stop(Exception):
    pass


def train_until(trainer: Trainer, epoch: int, checkpoint: Path) -> None:
    """Fit up to ``epoch``, save a checkpoint there and stop, as a pre-empted job would."""
    def stop(metrics: dict) -> None:
        if trainer.epoch == epoch:
            trainer.save_checkpoint(checkpoint)
            raise _Stop

    try:
        trainer.fit(stop)
    except _Stop:
        pass


def syncs(caught: list[warnings.WarningMessage]) -> int:
    """Host syncs among the warnings of ``torch.cuda.set_sync_debug_mode("warn")``."""
    return sum("synchroniz" in str(warning.message) for warning in caught)


def fused(trainer: Trainer) -> bool:
    return bool(trainer.optimizer.param_groups[0]["fused"])


# -- sections ---------------------------------------------------------------------------------------


def environment(emit: Emit) -> None:
    before = local_gpu()  # first: no CUDA in this process yet
    initialised = torch.cuda.is_initialized()
    emit("nvml", total_bytes=before.total_bytes, used_bytes=before.used_bytes, bf16=before.bf16,
         cuda_initialised=initialised, ok=before != DEFAULT_GPU and not initialised)
    import ray

    properties = torch.cuda.get_device_properties(0)
    emit("versions", torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
         ray=ray.__version__, gpu=properties.name, capability=f"{properties.major}.{properties.minor}",
         total_bytes=properties.total_memory, devices=torch.cuda.device_count(), cpus=os.cpu_count(),
         ok=abs(properties.total_memory - before.total_bytes) < 2**30)
    x = torch.randn(128, 64, 32, 32, device="cuda", requires_grad=True)
    weight = torch.randn(64, 64, 3, 3, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # load cuDNN's and cuBLAS's kernels into the context
        loss = F.conv2d(x, weight, padding=1).float().mean() + (x.flatten(1) @ x.flatten(1).T).float().mean()
    loss.backward()
    torch.cuda.synchronize()
    context = local_gpu().used_bytes - before.used_bytes - torch.cuda.memory_reserved()
    emit("cuda_context", context_bytes=context, set_aside_bytes=CUDA_CONTEXT_BYTES + MARGIN_BYTES,
         ok=context <= CUDA_CONTEXT_BYTES + MARGIN_BYTES)


def train(emit: Emit) -> None:
    """Host syncs stall the launch queue: a step of a small net on a big GPU is shorter than a sync."""
    data = synthetic(10_000, 1_000)
    trainer = Trainer(WRNSpec.parse("WRN-16-4"), data,
                      TrainConfig(epochs=3, precision="bf16", channels_last=True, device="cuda"))
    steps = len(trainer.train_loader)
    seen: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = trainer.fit(lambda metrics: seen.append(syncs(caught)))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for metrics, count in zip(result.history, (b - a for a, b in zip([0, *seen], seen))):
        emit("epoch", epoch=metrics["epoch"], steps=steps, syncs=count, images_per_s=metrics["images_per_s"],
             epoch_seconds=metrics["epoch_seconds"], ok=count < steps)
    emit("run", outcome=result.outcome, precision=trainer.precision, channels_last=trainer.channels_last,
         fused_sgd=fused(trainer), ok=result.outcome == "completed" and trainer.precision == "bf16" and fused(trainer))


def memory(emit: Emit) -> None:
    """Peaks against the estimate ``gpus_per_trial: auto`` sizes shares from, and the cap of that share."""
    data = synthetic(3 * 128)
    data_bytes = data.train.images.nbytes + data.train.labels.nbytes
    total = torch.cuda.get_device_properties(0).total_memory
    for name in ("WRN-16-4", "WRN-28-10"):
        spec = WRNSpec.parse(name)
        for precision in ("bf16", "fp32"):
            free_device_memory()
            torch.cuda.reset_peak_memory_stats()
            Trainer(spec, data, TrainConfig(epochs=1, batch_size=128, precision=precision, device="cuda")).fit()
            peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
            estimate = spec.train_memory_bytes(32, 128, BYTES_PER_ELEMENT[precision]) + data_bytes
            auto = AutoGPUResources(1, local_gpu(), "cifar10", 128, precision, data_bytes)
            share = auto.gpu_share({"name": name})
            cap = allocator_bytes(share, total)
            emit("peak", spec=name, precision=precision, peak_allocated_bytes=peak, peak_reserved_bytes=reserved,
                 estimate_bytes=estimate, peak_over_estimate=peak / estimate, auto_share=share, cap_bytes=cap,
                 ok=reserved <= cap)
    free_device_memory()


def out_of_memory(emit: Emit) -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    free_device_memory()
    baseline = torch.cuda.memory_reserved()
    big = WRNSpec.parse("WRN-28-10")
    try:
        torch.cuda.set_per_process_memory_fraction(64 * 2**20 / total)  # under its 146 MB of weights
        try:
            Trainer(big, synthetic(256), TrainConfig(epochs=1, device="cuda"))
            emit("building", ok=False)
        except OutOfMemory as error:
            emit("building", reason=str(error), ok=str(error).startswith("out of memory building"))
        free_device_memory()
        torch.cuda.set_per_process_memory_fraction(4 * 2**30 / total)
        trainer = Trainer(big, synthetic(4096), TrainConfig(epochs=1, batch_size=4096, device="cuda"))
        result = trainer.fit()
        emit("epoch", outcome=result.outcome, reason=result.reason, ok=result.outcome == "out_of_memory")
        del trainer
        free_device_memory()
        reserved = torch.cuda.memory_reserved()
        emit("freed", reserved_bytes=reserved, before_bytes=baseline, ok=reserved <= baseline)
        result = Trainer(WRNSpec.parse("WRN-16-4"), synthetic(1024), TrainConfig(epochs=1, device="cuda")).fit()
        emit("next_trial", outcome=result.outcome, ok=result.outcome == "completed")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def checkpoint(emit: Emit) -> None:
    spec, data = WRNSpec.parse("WRN-16-4"), synthetic(256, 128)
    config = TrainConfig(epochs=3, batch_size=128)
    with tempfile.TemporaryDirectory() as directory:
        first, second = Path(directory, "gpu.pt"), Path(directory, "cpu.pt")
        gpu = Trainer(spec, data, replace(config, device="cuda"))
        train_until(gpu, 1, first)
        cpu = Trainer(spec, data, replace(config, device="cpu"))
        cpu.load_checkpoint(first)
        loaded = cpu.model.state_dict()
        same = all(torch.equal(value.cpu(), loaded[key]) for key, value in gpu.model.state_dict().items())
        emit("gpu_to_cpu", epoch=cpu.epoch, same_weights=same, fused_sgd=fused(cpu),
             ok=cpu.epoch == 1 and same and not fused(cpu))
        train_until(cpu, 2, second)
        back = Trainer(spec, data, replace(config, device="cuda"))
        back.load_checkpoint(second)
        result = back.fit()
        emit("cpu_to_gpu", epochs=result.epochs, outcome=result.outcome, fused_sgd=fused(back),
             history=[m["epoch"] for m in result.history],
             ok=result.outcome == "completed" and result.epochs == 3 and fused(back))


def compile_(emit: Emit) -> None:
    """Four nets in one process, as a reused Ray actor trains them; hitting the recompile limit raises."""
    import psutil
    import torch._dynamo

    counters = torch._dynamo.utils.counters
    data = synthetic(1000, 200)  # a last training batch of 104: the batch dimension must be dynamic
    limit = torch._dynamo.config.fail_on_recompile_limit_hit
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    try:
        for name in ("WRN-10-1", "WRN-10-2", "WRN-16-1", "WRN-13-1-B(3,1,3)"):
            graphs, start = counters["stats"]["unique_graphs"], time.perf_counter()
            trainer = Trainer(WRNSpec.parse(name), data, TrainConfig(epochs=2, compile=True, device="cuda"))
            result = trainer.fit()
            # Inductor's compile workers: a sidecar process and its pool, at most one per torch thread.
            workers = len(psutil.Process().children(recursive=True))
            emit("trial", spec=name, outcome=result.outcome, graphs=counters["stats"]["unique_graphs"] - graphs,
                 compile_processes=workers, torch_threads=torch.get_num_threads(),
                 seconds=time.perf_counter() - start, images_per_s=result.history[-1]["images_per_s"],
                 ok=result.outcome == "completed" and workers <= torch.get_num_threads() + 1)
    finally:
        torch._dynamo.config.fail_on_recompile_limit_hit = limit


def probe_trial(config: dict) -> None:
    """One search trial's GPU handling: the cap, the device by the trial's GPUs, two epochs of WRN-16-2."""
    from ray import tune

    from wrn_search.search.trainable import limit_gpu_memory, trial_train_config

    gpus = config["gpus"]
    limit_gpu_memory(gpus)
    start = time.time()
    data = synthetic(8192, 1024) if gpus else synthetic(256, 64)  # the CPU trial has one core
    trainer = Trainer(WRNSpec.parse("WRN-16-2"), data, trial_train_config({}, TrainConfig(epochs=3), gpus))
    result = trainer.fit()
    on_gpu = trainer.device.type == "cuda"
    total = torch.cuda.get_device_properties(0).total_memory if on_gpu else 0
    tune.report({"gpus": gpus, "device": str(trainer.device), "outcome": result.outcome,
                 "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "device_count": torch.cuda.device_count() if on_gpu else None,
                 "cap": torch.cuda.get_per_process_memory_fraction() if on_gpu else None,
                 "expected_cap": memory_fraction(gpus, total) if on_gpu else None,
                 "peak_reserved_bytes": torch.cuda.max_memory_reserved() if on_gpu else None,
                 "cuda_initialised": torch.cuda.is_initialized(), "start": start, "end": time.time()})


def ray_trials(emit: Emit) -> None:
    from ray import tune

    from benchmarks.common import stop_ray
    from benchmarks.gpu_packing import start_ray_on_one_gpu

    start_ray_on_one_gpu()
    try:
        with tempfile.TemporaryDirectory() as directory:
            trainable = tune.with_resources(
                probe_trial, lambda config: tune.PlacementGroupFactory([{"CPU": 1, "GPU": config["gpus"]}]))
            tuner = tune.Tuner(trainable, param_space={"gpus": tune.grid_search([0.25] * 4 + [0])},
                               tune_config=tune.TuneConfig(max_concurrent_trials=5),
                               run_config=tune.RunConfig(storage_path=directory, verbose=0))
            grid = tuner.fit()
    finally:
        stop_ray()
    keys = ("gpus", "device", "outcome", "visible_devices", "device_count", "cap", "expected_cap",
            "peak_reserved_bytes", "cuda_initialised")
    results = []
    for result in grid:
        if result.error is not None:
            emit("trial", error=str(result.error).partition("\n")[0], ok=False)
            continue
        metrics = result.metrics
        results.append(metrics)
        if metrics["gpus"]:
            ok = metrics["device_count"] == 1 and abs(metrics["cap"] - metrics["expected_cap"]) < 1e-9
        else:
            ok = metrics["device"] == "cpu" and not metrics["cuda_initialised"]
        emit("trial", **{key: metrics.get(key) for key in keys}, ok=ok and metrics["outcome"] == "completed")
    shared = [metrics for metrics in results if metrics["gpus"]]
    if shared:
        emit("packed", gpu_trials=len(shared), ok=len(shared) == 4,
             all_at_once=min(m["end"] for m in shared) > max(m["start"] for m in shared),
             peak_reserved_bytes=sum(m["peak_reserved_bytes"] or 0 for m in shared))


def train_step(emit: Emit) -> None:
    from benchmarks import train_step as benchmark

    row = benchmark.run(quick=False)
    emit("benchmark", **row.to_dict(), ok=all(row.checks.values()))


SECTIONS: list[tuple[str, Callable[[Emit], None]]] = [
    ("environment", environment), ("train", train), ("memory", memory), ("out_of_memory", out_of_memory),
    ("checkpoint", checkpoint), ("compile", compile_), ("ray", ray_trials), ("train_step", train_step),
]


def run_sections(sections: list[tuple[str, Callable[[Emit], None]]]) -> bool:
    """Run each section, printing its observations; True if none raised and every check held."""
    passed = True

    def line(record: dict) -> None:
        print(json.dumps(record, default=str), flush=True)

    for name, section in sections:
        def emit(observation: str, **values) -> None:
            nonlocal passed
            passed = passed and values.get("ok", True) is not False
            line({"section": name, "observation": observation, **values})

        start = time.perf_counter()
        try:
            section(emit)
        except Exception as error:  # the next section still runs
            passed = False
            first_line = str(error).partition("\n")[0]
            line({"section": name, "error": f"{type(error).__name__}: {first_line}"})
        finally:
            free_device_memory()
        line({"section": name, "observation": "seconds", "seconds": round(time.perf_counter() - start, 1)})
    return passed


def main() -> int:
    if not torch.cuda.is_available():
        print(SKIPPED)
        return 0
    return 0 if run_sections(SECTIONS) else 1


if __name__ == "__main__":
    sys.exit(main())
