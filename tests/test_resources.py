"""Trials on GPUs, without one: what a trial asks Ray for, its memory cap on a shared GPU, the
driver's GPU reading, and a trial's memory given back. CUDA, NVML and Ray Tune's session are faked."""

import ctypes
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ray import tune

from wrn_search.network.spec import WRNSpec
from wrn_search.search import resources, trainable
from wrn_search.search.resources import (
    CUDA_CONTEXT_BYTES,
    DEFAULT_GPU,
    MARGIN_BYTES,
    AutoGPUResources,
    GPUInfo,
    local_gpu,
    memory_fraction,
    trial_resources,
)
from wrn_search.spaces.space import parse_space
from wrn_search.training.checkpoint_format import CHECKPOINT_FILE
from wrn_search.training.data import Dataset, Split, dataset_info
from wrn_search.training.engine import TrainConfig, Trainer


def trial_config(name: str) -> dict:
    """The spec columns a trial config carries (``SearchSpace.config``)."""
    return WRNSpec.parse(name).columns()


GiB = 2**30

pytestmark = pytest.mark.usefixtures("one_thread")


# -- gpus_per_trial: auto ----------------------------------------------------------------------


@pytest.mark.parametrize("gpu,precision,share", [
    (GPUInfo(16 * GiB, 0, bf16=False), "auto", 0.5),   # pre-Ampere: auto trains in fp32
    (GPUInfo(16 * GiB, 0, bf16=True), "auto", 0.25),   # bf16 autocast
    (GPUInfo(16 * GiB, 0, bf16=True), "fp32", 0.5),    # the space asks for fp32
    (GPUInfo(16 * GiB, 0, bf16=False), "bf16", 0.25),  # ... or forces bf16
])
def test_auto_sizes_the_share_in_the_precision_the_trial_trains_in(gpu, precision, share):
    """WRN-28-10 at batch 128 keeps 1.38 GiB of activations in bf16 by the cost model, 2.76 GiB in fp32:
    with 2 bytes assumed in fp32 too, auto gave it a 1/4 share (4 GiB) it could not train in."""
    auto = AutoGPUResources(cpus=1, gpu=gpu, dataset="cifar10", batch_size=128, precision=precision)
    assert auto.gpu_share(trial_config("WRN-28-10")) == share
    request = auto(trial_config("WRN-28-10")).required_resources
    assert request == {"CPU": 1, "GPU": share}


def test_auto_gives_big_nets_a_whole_gpu():
    auto = AutoGPUResources(cpus=1, gpu=GPUInfo(80 * GiB, 0, True), dataset="cifar10", batch_size=128,
                            data_bytes=150 * 2**20)
    assert [auto.gpu_share({**trial_config("WRN-28-10"), "batch_size": batch})
            for batch in (128, 1024, 2048, 4096)] == [
        0.125, 0.25, 0.5, 1.0]


# -- the cap of a trial on a shared GPU ----------------------------------------------------------


@pytest.fixture
def fake_cuda(monkeypatch):
    """An 80 GiB GPU as a trial's torch sees it; records the allocator caps set."""
    caps = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * GiB))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: caps.append(fraction))
    return caps


def test_a_fractional_trial_caps_its_allocator_below_its_share(fake_cuda):
    """set_per_process_memory_fraction(share) caps PyTorch's allocator only; each process's CUDA context comes on
    top, so 8 trials at 1/8 oversubscribed the GPU and the one that grew last ran out, whichever net it was."""
    trainable.limit_gpu_memory(0.125)
    (cap,) = fake_cuda
    assert cap == (10 * GiB - CUDA_CONTEXT_BYTES - MARGIN_BYTES) / (80 * GiB) == memory_fraction(0.125, 80 * GiB)
    assert 8 * (cap * 80 * GiB + CUDA_CONTEXT_BYTES + MARGIN_BYTES) <= 80 * GiB
    trainable.limit_gpu_memory(1)
    trainable.limit_gpu_memory(0)
    assert len(fake_cuda) == 1  # a whole GPU, or none, is not capped


def test_a_share_with_no_room_beside_a_context_is_out_of_memory(fake_cuda):
    with pytest.raises(trainable.OutOfMemory, match=r"^out of memory: 0.01 of a 80.0 GiB GPU leaves no room"):
        trainable.limit_gpu_memory(0.01)
    assert not fake_cuda


# -- the driver reads its GPU without CUDA -------------------------------------------------------


class FakeNVML:
    """libnvidia-ml's calls as ctypes makes them: arguments by reference, 0 for success."""

    def __init__(self, total: int, used: int, major: int):
        self.total, self.used, self.major = total, used, major
        self.handles: list = []
        self.shut_down = False

    def nvmlInit_v2(self):
        return 0

    def nvmlDeviceGetHandleByIndex_v2(self, index, handle):
        self.handles.append(index)
        handle._obj.value = 1000 + index
        return 0

    def nvmlDeviceGetHandleByUUID(self, uuid, handle):
        self.handles.append(uuid)
        handle._obj.value = 2000
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle, memory):
        memory._obj.total, memory._obj.used, memory._obj.free = self.total, self.used, self.total - self.used
        return 0

    def nvmlDeviceGetCudaComputeCapability(self, handle, major, minor):
        major._obj.value, minor._obj.value = self.major, 0
        return 0

    def nvmlShutdown(self):
        self.shut_down = True
        return 0


@pytest.fixture
def no_cuda_in_the_driver(monkeypatch):
    """Any CUDA initialisation fails the test: the driver's context on GPU 0 would be in no trial's share."""
    def initialised(*args, **kwargs):
        raise AssertionError("CUDA initialised in the driver")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("init", "_lazy_init", "get_device_properties", "mem_get_info", "device_count"):
        monkeypatch.setattr(torch.cuda, name, initialised)


@pytest.mark.parametrize("visible,handle", [(None, 0), ("3,1", 3), ("GPU-8f2e", b"GPU-8f2e")])
def test_the_driver_reads_its_gpu_through_nvml(monkeypatch, no_cuda_in_the_driver, visible, handle):
    nvml = FakeNVML(total=80 * GiB, used=GiB, major=9)
    monkeypatch.setattr(resources, "_load_nvml", lambda: nvml)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert local_gpu() == GPUInfo(80 * GiB, GiB, bf16=True)
    assert nvml.handles == [handle] and nvml.shut_down


def test_without_nvml_or_a_visible_gpu_the_driver_assumes_the_default(monkeypatch, no_cuda_in_the_driver):
    def missing():
        raise OSError(f"{resources.NVML_LIBRARY}: cannot open shared object file")

    monkeypatch.setattr(resources, "_load_nvml", missing)
    assert local_gpu() == DEFAULT_GPU and not DEFAULT_GPU.bf16
    monkeypatch.setattr(resources, "_load_nvml", lambda: FakeNVML(32 * GiB, 0, major=7))
    assert local_gpu() == GPUInfo(32 * GiB, 0, bf16=False)  # a V100: auto trains in fp32
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpu() == DEFAULT_GPU


def test_the_nvml_memory_struct_is_three_unsigned_64_bit_counters():
    assert ctypes.sizeof(resources._NVMLMemory) == 24


# -- trial_resources ------------------------------------------------------------------------------


def space(training: dict, gpus_per_trial) -> object:
    return parse_space({"architectures": ["WRN-16-1"], "dataset": {"name": "cifar10"}, "training": training,
                        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus_per_trial}}, "test.yaml")


TINY = Dataset(dataset_info("digits"), *(Split(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(2, np.int64)),) * 3)


@pytest.fixture
def cluster(monkeypatch):
    """Ray nodes as ``ray.nodes()`` lists them; set ``gpus`` per node."""
    def nodes(gpus: float) -> None:
        monkeypatch.setattr(resources.ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": gpus}}])
    return nodes


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
@pytest.mark.parametrize("gpus_per_trial,node_gpus", [(0, 1), ("auto", 0)])
def test_a_cuda_device_for_trials_without_a_gpu_is_refused(cluster, device, gpus_per_trial, node_gpus):
    """``training.device: cuda`` put zero-GPU trials on a GPU nobody had reserved."""
    cluster(node_gpus)
    with pytest.raises(ValueError, match=rf"^training.device: '{device}', but the trials get no GPU"):
        trial_resources(space({"device": device}, gpus_per_trial), TINY)


def test_a_trial_sees_only_its_own_gpu_as_cuda_0(cluster, monkeypatch):
    cluster(2)
    monkeypatch.setattr(resources, "local_gpu", lambda: GPUInfo(80 * GiB, 0, True))
    with pytest.raises(ValueError, match=r"^training.device: 'cuda:1', but a trial sees only the GPU Ray gives it"):
        trial_resources(space({"device": "cuda:1"}, 1), TINY)
    assert trial_resources(space({"device": "cuda"}, 0.5), TINY) == {"cpu": 1, "gpu": 0.5}
    assert trial_resources(space({}, 0), TINY) == {"cpu": 1, "gpu": 0}
    auto = trial_resources(space({"device": "cuda", "precision": "fp32", "batch_size": 64}, "auto"), TINY)
    assert isinstance(auto, AutoGPUResources) and auto.bytes_per_element == 4 and auto.batch_size == 64
    assert auto.data_bytes == 2 * 128 and auto.gpu.total_bytes == 80 * GiB


# -- a trial in a reused actor ----------------------------------------------------------------------


class FakeTune:
    """The part of ``ray.tune`` a trial calls, for a zero-GPU trial; keeps what it reports."""

    Checkpoint = tune.Checkpoint

    def __init__(self, checkpoint: tune.Checkpoint | None = None):
        self.reports: list[dict] = []
        self.checkpoint = checkpoint

    def get_context(self):
        return SimpleNamespace(get_trial_resources=lambda: SimpleNamespace(required_resources={"CPU": 1}),
                               get_trial_id=lambda: "trial0")

    def get_checkpoint(self):
        return self.checkpoint

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.reports.append(metrics)


@pytest.fixture
def session(monkeypatch):
    """Run ``train_trial`` outside Ray: returns the fake ``tune`` (pass a checkpoint to resume from)."""
    def start(checkpoint: tune.Checkpoint | None = None) -> FakeTune:
        fake = FakeTune(checkpoint)
        monkeypatch.setattr(trainable, "tune", fake)
        monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "n0"))
        return fake
    return start


TRAINING = TrainConfig(epochs=2, batch_size=128, num_threads=1)


def test_a_trial_gives_its_memory_back_once_its_trainer_is_gone(session, monkeypatch, digits):
    """A reused actor started its next trial holding the last one's cached GPU memory."""
    fake = session()
    alive = weakref.WeakSet()

    class Tracked(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            alive.add(self)

    freed = []
    monkeypatch.setattr(trainable, "Trainer", Tracked)
    monkeypatch.setattr(trainable, "free_device_memory", lambda: freed.append(len(alive)))
    trainable.train_trial(trial_config("WRN-10-1"), digits, TRAINING)
    assert [m["outcome"] for m in fake.reports] == ["completed", "completed"]
    assert freed == [0]


def test_running_out_of_memory_restoring_a_checkpoint_is_an_outcome(session, monkeypatch, digits, tmp_path):
    """A checkpoint read straight onto a full GPU was 'corrupt or unreadable'; Tune's checkpoint, the last
    one tried, then crashed the trial, and Ray retried it twice."""
    trainer = Trainer(WRNSpec.parse("WRN-10-1"), digits, trainable.trial_train_config({}, TRAINING))
    trainer.fit(lambda metrics: trainer.save_checkpoint(tmp_path / CHECKPOINT_FILE))
    fake = session(tune.Checkpoint.from_directory(str(tmp_path)))

    def full(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(torch, "load", full)
    trainable.train_trial({**trial_config("WRN-10-1"), "params": 1, "macs": 2}, digits, TRAINING)
    assert fake.reports == [{"epoch": 1, "val_error": 1.0, "outcome": "out_of_memory", "params": 1, "macs": 2,
                             "node_id": "n0"}]


def test_an_out_of_memory_trial_still_gives_its_memory_back(session, monkeypatch, digits):
    fake = session()
    freed = []
    monkeypatch.setattr(trainable, "free_device_memory", lambda: freed.append(True))
    trainable.train_trial(trial_config("WRN-10-1000"), digits, TRAINING)  # more params than any host's memory
    assert [m["outcome"] for m in fake.reports] == ["out_of_memory"] and freed == [True]


def test_zero_gpu_trials_train_on_the_cpu():
    assert trainable.trial_train_config({"lr": 0.05}, TrainConfig(epochs=3), gpus=0) == TrainConfig(epochs=3, lr=0.05,
                                                                                            device="cpu")
    assert trainable.trial_train_config({}, TrainConfig(), gpus=0.25).device == "auto"
