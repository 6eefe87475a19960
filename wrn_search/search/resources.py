"""What a trial asks Ray for, and how much of a shared GPU it may fill.

``gpus_per_trial: auto`` sizes each trial's share from the cost model's training memory
in the precision the trial will train in. A trial on a share caps PyTorch's allocator
below it (:func:`memory_fraction`): its CUDA context lives outside that cap. The driver
reads its GPU through NVML, so it never creates a CUDA context of its own on a GPU whose
memory the trials' shares divide among themselves.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import ray
from ray import tune

from wrn_search.network.spec import WRNSpec
from wrn_search.spaces.space import SearchSpace
from wrn_search.training.data import Dataset, dataset_info
from wrn_search.training.recipe import BF16_CUDA_MAJOR

#: A CUDA context per process: 300-600 MiB, outside PyTorch's allocator and so outside its cap.
CUDA_CONTEXT_BYTES = 600 * 2**20
#: Also outside the cap: kernels loaded into the context as they are first used (cuDNN, cuBLAS, Inductor's).
MARGIN_BYTES = 256 * 2**20
#: ``auto`` asks for the cost model's training-memory estimate times this, plus the trial's copy of the data.
HEADROOM = 1.5
#: Activation bytes per element in each precision a trial can train in.
BYTES_PER_ELEMENT = {"bf16": 2, "fp32": 4}
#: The NVIDIA management library, which reads GPUs without a CUDA context (Linux).
NVML_LIBRARY = "libnvidia-ml.so.1"


@dataclass(frozen=True)
class GPUInfo:
    """One GPU as NVML reports it; ``bf16``: native bf16 (Ampere on), where precision "auto" trains in bf16."""

    total_bytes: int
    used_bytes: int
    bf16: bool


#: Assumed of the trials' GPUs when the driver sees none (a head node without GPUs): 16 GiB, fp32 activations.
DEFAULT_GPU = GPUInfo(16 * 2**30, 0, False)


def allocator_bytes(share: float, total_bytes: int) -> int:
    """What PyTorch's allocator may hold on ``share`` of a GPU: the share less a CUDA context and the margin."""
    return int(share * total_bytes) - CUDA_CONTEXT_BYTES - MARGIN_BYTES


def memory_fraction(share: float, total_bytes: int) -> float:
    """``torch.cuda.set_per_process_memory_fraction``'s argument for a trial on ``share`` of the GPU.

    Eight trials at 1/8 each then fill the GPU, contexts included, without oversubscribing it;
    0 when the share has no room beside a context.
    """
    return max(0, allocator_bytes(share, total_bytes)) / total_bytes


def trial_precision(precision: str, gpu: GPUInfo) -> str:
    """The precision a trial trains in on ``gpu``: ``precision`` with "auto" resolved as the trainer does."""
    if precision != "auto":
        return precision
    return "bf16" if gpu.bf16 else "fp32"


class _NVMLMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _load_nvml():
    return ctypes.CDLL(NVML_LIBRARY)


def local_gpu() -> GPUInfo:
    """This process's first visible GPU (``CUDA_VISIBLE_DEVICES``: an index or a UUID), or :data:`DEFAULT_GPU`.

    Read through NVML, not torch: ``torch.cuda`` would initialise CUDA in the driver, whose
    context on GPU 0 no trial's share accounts for.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    if not visible:
        return DEFAULT_GPU
    try:
        nvml = _load_nvml()
    except OSError:  # no NVIDIA driver
        return DEFAULT_GPU
    if nvml.nvmlInit_v2():
        return DEFAULT_GPU
    try:
        handle, memory, major, minor = ctypes.c_void_p(), _NVMLMemory(), ctypes.c_int(), ctypes.c_int()
        found = (nvml.nvmlDeviceGetHandleByIndex_v2(int(visible), ctypes.byref(handle)) if visible.isdigit()
                 else nvml.nvmlDeviceGetHandleByUUID(visible.encode(), ctypes.byref(handle)))
        if (found or nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
                or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor))):
            return DEFAULT_GPU
        return GPUInfo(memory.total, memory.used, major.value >= BF16_CUDA_MAJOR)
    finally:
        nvml.nvmlShutdown()


class AutoGPUResources:
    """Per-trial resources for ``gpus_per_trial: auto``: small nets share a GPU, big ones get one.

    The share is the smallest of 1/8, 1/4, 1/2 whose allocator cap (:func:`allocator_bytes`)
    holds the cost model's training-memory estimate in the trial's precision with 50% headroom,
    plus the trial's on-device copy of the dataset (a picklable callable, as Tune requires).
    """

    SHARES = (0.125, 0.25, 0.5)

    def __init__(self, cpus: float, gpu: GPUInfo, dataset: str, batch_size: int, precision: str = "auto",
                 data_bytes: int = 0):
        self.cpus = cpus
        self.gpu = gpu
        self.dataset = dataset
        self.batch_size = batch_size
        self.bytes_per_element = BYTES_PER_ELEMENT[trial_precision(precision, gpu)]
        self.data_bytes = data_bytes

    def gpu_share(self, config: dict) -> float:
        info = dataset_info(self.dataset)
        training = WRNSpec.from_columns(config).train_memory_bytes(
            info.input_size, config.get("batch_size", self.batch_size), self.bytes_per_element, info.num_classes,
            info.in_channels)
        need = HEADROOM * training + self.data_bytes
        return next((share for share in self.SHARES if need <= allocator_bytes(share, self.gpu.total_bytes)), 1.0)

    def __call__(self, config: dict) -> tune.PlacementGroupFactory:
        return tune.PlacementGroupFactory([{"CPU": self.cpus, "GPU": self.gpu_share(config)}])


def check_trial_device(device: str, gpus: float) -> None:
    """Refuse a space's ``training.device`` that puts trials on a GPU Ray did not give them.

    Ray shows a trial only the GPU it reserved for it, as ``cuda:0``, and a trial without one
    would train on a GPU whose memory and time other trials were promised.
    """
    if not device.startswith("cuda"):
        return
    if not gpus:
        raise ValueError(f"training.device: {device!r}, but the trials get no GPU (resources.gpus_per_trial, or "
                         "no Ray node has one) and would train on a GPU reserved for nobody; leave device out "
                         "(auto: a trial trains on the GPU Ray gives it, else on the CPU)")
    if device not in ("cuda", "cuda:0"):
        raise ValueError(f"training.device: {device!r}, but a trial sees only the GPU Ray gives it, as cuda:0; "
                         "leave device out (auto: a trial trains on the GPU Ray gives it)")


def trial_resources(space: SearchSpace, dataset: Dataset):
    """Tune's resource request per trial; needs a connected Ray to check what the cluster has."""
    resources = space.resources
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    for key, wanted in (("CPU", resources.cpus_per_trial), ("GPU", resources.gpus_per_trial)):
        largest = max((node.get(key, 0) for node in nodes), default=0)
        if wanted != "auto" and wanted > largest:
            raise ValueError(f"{key.lower()}s_per_trial: {wanted:g} asked, but the largest Ray node has "
                             f"{largest:g} {key}s (a trial runs on one node)")
    gpus = resources.gpus_per_trial
    if gpus == "auto" and not any(node.get("GPU") for node in nodes):
        gpus = 0  # auto on a cluster without GPUs: CPU trials
    training = space.training
    check_trial_device(training.device, gpus)
    if gpus == "auto":
        data_bytes = sum(split.images.nbytes for split in (dataset.train, dataset.val))
        return AutoGPUResources(resources.cpus_per_trial, local_gpu(), space.dataset.name,
                                training.batch_size, training.precision, data_bytes)
    return {"cpu": resources.cpus_per_trial, "gpu": gpus}
