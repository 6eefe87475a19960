"""The trainer: recipe, metrics callback, exact resume, checkpoint errors, divergence, out-of-memory, compile."""

import gc
import math
import re

import pytest
import torch

from wrn_search.network.spec import WRNSpec
from wrn_search.training import loader, recipe
from wrn_search.training.checkpoint_format import CheckpointError
from wrn_search.training.data import load_dataset
from wrn_search.training.device import OutOfMemory, free_device_memory, is_out_of_memory
from wrn_search.training.engine import TrainConfig, Trainer, lr_factor

SPEC = WRNSpec.parse("WRN-10-1-d0.2")  # dropout on: the resume test covers the dropout RNG too
METRIC_KEYS = {"epoch", "train_loss", "val_error", "val_loss", "lr", "images_per_s", "epoch_seconds", "params",
               "macs", "outcome"}


pytestmark = pytest.mark.usefixtures("one_thread")


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in trainer.model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"schedule": "linear"}, "schedule"),
        ({"milestones": (0.6, 0.3)}, "milestones"),
        ({"milestones": (0.5, 1.0)}, "milestones"),
        ({"gamma": 0}, "gamma"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"augment": "mixup"}, "augment"),
        ({"precision": "fp16"}, "precision"),
        ({"device": "tpu:0:1"}, "device"),
        ({"seed": -1}, "seed"),
        ({"num_threads": 0}, "num_threads"),
        ({"momentum": 0, "nesterov": True}, "nesterov"),
        # Types the dataclass did not check: each used to pass and break training later.
        ({"nesterov": "yes"}, "nesterov"),
        ({"compile": 1}, "compile"),
        ({"channels_last": "no"}, "channels_last"),
        ({"milestones": 0.5}, "milestones"),
        ({"device": "gpu"}, "device"),
        ({"device": 0}, "device"),
        ({"augment": ["none"]}, "augment"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        TrainConfig(**kwargs)


def test_the_recipe_module_lists_the_loaders_augmentations():
    """recipe checks augment without importing torch, so it keeps its own list: it must be the loader's."""
    assert recipe.AUGMENTATIONS == loader.AUGMENTATIONS


def test_paper_step_schedule_and_cosine():
    factor = lr_factor(TrainConfig())
    assert [factor(e) for e in (0, 59, 60, 119, 120, 159, 160, 199)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04, 0.04, 0.008, 0.008])
    cosine = lr_factor(TrainConfig(epochs=10, schedule="cosine"))
    assert cosine(0) == 1 and cosine(5) == pytest.approx(0.5) and cosine(9) < 0.03


def test_metrics_callback_sees_the_finished_epoch(digits):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, precision="fp32"))
    seen = []
    result = trainer.fit(lambda m: seen.append((trainer.epoch, m)))
    assert [(epoch, m["epoch"]) for epoch, m in seen] == [(1, 1), (2, 2)]
    metrics = seen[-1][1]
    assert set(metrics) == METRIC_KEYS
    assert metrics["params"] == SPEC.num_params(10, 1) and metrics["macs"] == SPEC.macs((8, 8), 10, 1)
    assert metrics["outcome"] == "completed" and 0 <= metrics["val_error"] <= 1 and metrics["images_per_s"] > 0
    assert (result.outcome, result.epochs, result.val_error, result.reason) == ("completed", 2, metrics["val_error"], None)
    assert result.history == [m for _, m in seen] and result.metrics == metrics
    error, loss = trainer.evaluate("test")
    assert 0 <= error <= 1 and loss > 0
    assert trainer.evaluate(digits.val) == trainer.evaluate("val")
    assert trainer.fit().epochs == 2  # nothing left to train
    with pytest.raises(ValueError, match="^split: "):
        trainer.evaluate("holdout")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kill_and_resume_gives_the_same_weights(digits, tmp_path, precision, cuda_visible):
    """Bit-exact on the CPU (pinned), where training is deterministic for a precision and thread count."""
    config = TrainConfig(epochs=4, augment="crop_flip", precision=precision, seed=3, device="cpu")
    uninterrupted = Trainer(SPEC, digits, config)
    uninterrupted.fit()

    class Killed(Exception):
        pass

    def save_and_stop(metrics):
        interrupted.save_checkpoint(tmp_path / "ckpt.pt")
        if metrics["epoch"] == 2:
            raise Killed

    interrupted = Trainer(SPEC, digits, config)
    with pytest.raises(Killed):
        interrupted.fit(save_and_stop)
    torch.manual_seed(12345)  # whatever ran in between must not matter
    resumed = Trainer(SPEC, digits, config)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.epoch == 2
    result = resumed.fit()
    assert result.epochs == 4 and [m["epoch"] for m in result.history] == [1, 2, 3, 4]
    assert same_weights(weights(resumed), weights(uninterrupted))
    assert [m["val_loss"] for m in result.history] == [m["val_loss"] for m in uninterrupted.history]


def test_training_leaves_the_global_rng_alone(digits):
    state = torch.random.get_rng_state()
    Trainer(SPEC, digits, TrainConfig(epochs=1, precision="fp32")).fit()
    assert torch.equal(torch.random.get_rng_state(), state)


def test_no_validation_split(digits):
    result = Trainer(SPEC, digits.merged(), TrainConfig(epochs=1, precision="fp32")).fit()
    assert result.outcome == "completed" and result.val_error is None and result.metrics["val_loss"] is None


def test_synthetic_cifar_shapes_with_crop_flip():
    data = load_dataset("synthetic", train_size=64, test_size=16, input_size=16)
    trainer = Trainer(WRNSpec.parse("WRN-10-1"), data, TrainConfig(epochs=1, batch_size=32, augment="crop_flip"))
    assert trainer.fit().outcome == "completed" and trainer.channels_last


# -- checkpoints --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, precision="fp32"))
    trainer.fit(lambda m: None)
    trainer.epoch = 1  # a mid-run checkpoint
    path = tmp_path_factory.mktemp("ckpt") / "run" / "checkpoint.pt"
    trainer.save_checkpoint(path)
    return path, weights(trainer)


def test_checkpoint_is_written_atomically(checkpoint):
    path, _ = checkpoint
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_runtime_settings_may_change_on_resume(digits, checkpoint):
    path, saved = checkpoint
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, precision="bf16", channels_last=False))
    trainer.load_checkpoint(path)
    assert trainer.epoch == 1 and len(trainer.history) == 2 and same_weights(weights(trainer), saved)


@pytest.mark.parametrize(
    "spec,config,split_seed,match",
    [
        ("WRN-10-2-d0.2", {}, 0, "spec.widen_factor"),
        ("WRN-10-1-d0.2", {"lr": 0.05}, 0, "config.lr"),
        ("WRN-10-1-d0.2", {"epochs": 3}, 0, "config.epochs"),
        ("WRN-10-1-d0.2", {}, 1, "dataset.labels_digest"),
    ],
)
def test_mismatched_checkpoint_is_an_error(checkpoint, spec, config, split_seed, match):
    data = load_dataset("digits", seed=split_seed)
    trainer = Trainer(WRNSpec.parse(spec), data, TrainConfig(**{"epochs": 2, **config}))
    with pytest.raises(CheckpointError, match=f"different run.*{match}"):
        trainer.load_checkpoint(checkpoint[0])
    assert trainer.epoch == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_checkpoint_is_an_error(digits, checkpoint, tmp_path, damage):
    path = tmp_path / "bad.pt"
    if damage == "truncate":
        path.write_bytes(checkpoint[0].read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        torch.save({"model": {}}, path)
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2))
    with pytest.raises(CheckpointError, match="^checkpoint: "):
        trainer.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        trainer.load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_is_read_into_host_memory_first(digits, checkpoint, monkeypatch):
    """Torch.load(map_location=cuda) needed room on the GPU for a second copy of the weights."""
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, device="cpu"))
    monkeypatch.setattr(trainer, "device", torch.device("cuda"))  # where it would train on a GPU machine
    places = []
    load = torch.load

    def recording(path, map_location=None, **kwargs):
        places.append(map_location)
        return load(path, map_location=map_location, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    trainer.load_checkpoint(checkpoint[0])
    assert places == ["cpu"] and trainer.epoch == 1


def exhausted(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")


@pytest.mark.parametrize("step", ["torch.load", "optimizer"])
def test_out_of_memory_loading_a_checkpoint_is_not_a_corrupt_checkpoint(digits, checkpoint, monkeypatch, step):
    """A GPU out of memory while loading was reported as a "corrupt or unreadable" checkpoint, which a
    trial skips, training from scratch; it is out of memory, an outcome."""
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2))
    monkeypatch.setattr(*((torch, "load") if step == "torch.load" else (trainer.optimizer, "load_state_dict")),
                        exhausted)
    message = (rf"^out of memory loading {re.escape(str(checkpoint[0]))} for {re.escape(SPEC.name)} on cpu: "
               r"CUDA out of memory\. Tried to allocate 20\.00 MiB$")
    with pytest.raises(OutOfMemory, match=message):
        trainer.load_checkpoint(checkpoint[0])
    assert trainer.epoch == 0


def test_the_optimizer_keeps_this_devices_kernels_after_loading(digits, tmp_path):
    """A checkpoint's optimizer groups name the kernels of the device that saved it (fused SGD on CUDA)."""
    saved = Trainer(SPEC, digits, TrainConfig(epochs=2, device="cpu"))
    for group in saved.optimizer.param_groups:
        group["fused"] = True  # as a GPU trainer saves it
    saved.save_checkpoint(tmp_path / "gpu.pt")
    resumed = Trainer(SPEC, digits, TrainConfig(epochs=2, device="cpu"))
    resumed.load_checkpoint(tmp_path / "gpu.pt")
    assert [group["fused"] for group in resumed.optimizer.param_groups] == [False]


# -- failures -----------------------------------------------------------------------------------


def test_divergence_is_an_outcome_not_an_exception(digits):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=3, lr=1e4))
    seen = []
    result = trainer.fit(seen.append)
    assert result.outcome == "diverged" and result.val_error == 1.0 and "non-finite" in result.reason
    assert result.epochs == 0 and len(seen) == 1
    assert seen[0]["outcome"] == "diverged" and seen[0]["val_error"] == 1.0 and set(seen[0]) == METRIC_KEYS


def test_out_of_memory_is_an_outcome_naming_spec_and_batch_size(digits, monkeypatch):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, batch_size=64))

    def exhausted(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_forward", exhausted)
    seen = []
    result = trainer.fit(seen.append)
    assert result.outcome == "out_of_memory" and result.val_error == 1.0
    assert SPEC.name in result.reason and "batch size 64" in result.reason
    assert seen[0]["outcome"] == "out_of_memory" and math.isclose(seen[0]["val_error"], 1.0)


@pytest.mark.parametrize("message", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
])
def test_library_allocation_failures_are_out_of_memory(digits, monkeypatch, message):
    """CuBLAS's, cuDNN's and CUDA's own allocation failures are plain RuntimeErrors; they crashed the
    trial, and Ray retried it twice to fail the same way."""
    assert is_out_of_memory(RuntimeError(message))
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, device="cpu"))

    def failing(x):
        raise RuntimeError(message)

    monkeypatch.setattr(trainer, "_forward", failing)
    result = trainer.fit()
    assert result.outcome == "out_of_memory" and result.reason.endswith(message.partition("\n")[0])
    with pytest.raises(OutOfMemory, match=rf"^out of memory evaluating {re.escape(SPEC.name)} on cpu: "):
        trainer.evaluate("test")  # wrn-search train --test, after training


def test_out_of_memory_evaluating_is_out_of_memory(digits, monkeypatch):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=1, device="cpu"))
    monkeypatch.setattr(trainer, "_forward", exhausted)
    with pytest.raises(OutOfMemory, match=r"^out of memory evaluating .* on cpu: CUDA out of memory\. Tried"):
        trainer.evaluate("test")
    with pytest.raises(ValueError, match="^split: "):
        trainer.evaluate("holdout")


def test_freeing_device_memory_empties_the_cuda_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    free_device_memory()
    assert emptied == [True]


def test_a_process_without_cuda_skips_the_full_collection(monkeypatch):
    """Nothing to give back, and gc.collect() was most of the gap between two CPU trials of a reused actor."""
    collected = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(gc, "collect", lambda *args: collected.append(True))
    free_device_memory()
    assert collected == []


def impossible_allocation(*args):
    """A real allocation failure of torch's CPU allocator, at once: 4 EiB is more than any address space."""
    return torch.empty(2**62, dtype=torch.uint8)


def test_host_allocation_failures_are_out_of_memory():
    with pytest.raises(RuntimeError) as error:
        impossible_allocation()
    assert is_out_of_memory(error.value)
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.parametrize("failure", [impossible_allocation, MemoryError], ids=["cpu_allocator", "MemoryError"])
def test_host_out_of_memory_in_an_epoch_is_an_outcome(digits, monkeypatch, failure):
    """Host memory running out in an epoch used to crash the trial like a bug."""
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=2, batch_size=64, device="cpu"))

    def exhausted(x):
        failure()
        raise MemoryError()

    monkeypatch.setattr(trainer, "_forward", exhausted)
    seen = []
    result = trainer.fit(seen.append)
    assert result.outcome == "out_of_memory" and result.val_error == 1.0 and len(seen) == 1
    assert result.reason.startswith(f"out of memory training {SPEC.name} with batch size 64 on cpu: ")
    if failure is impossible_allocation:
        assert "DefaultCPUAllocator: can't allocate memory" in result.reason


def test_other_errors_in_an_epoch_still_raise(digits, monkeypatch):
    trainer = Trainer(SPEC, digits, TrainConfig(epochs=1))

    def broken(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(trainer, "_forward", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        trainer.fit()


def test_a_net_whose_weights_exceed_the_memory_is_out_of_memory_before_allocating(digits):
    """WRN-10-1000 needs 826 GiB for its weights alone: refused before any layer is allocated (or the kernel kills)."""
    with pytest.raises(OutOfMemory, match=r"^out of memory for WRN-10-1000-B\(3,3\): its 73,987,648,186 "
                                          r"params alone need 826 GiB, more than the [\d,]+ GiB of host memory$"):
        Trainer(WRNSpec.parse("WRN-10-1000"), digits, TrainConfig(device="cpu"))


def test_allocation_failure_while_building_is_out_of_memory(digits, monkeypatch):
    monkeypatch.setattr("wrn_search.training.engine.build_model", impossible_allocation)
    message = rf"^out of memory building {re.escape(SPEC.name)} on cpu: .*DefaultCPUAllocator: can't allocate memory"
    with pytest.raises(OutOfMemory, match=message):
        Trainer(SPEC, digits, TrainConfig(device="cpu"))


# -- torch.compile -------------------------------------------------------------------------------


def test_compiled_trials_in_one_process_never_fall_back_to_eager(digits, monkeypatch):
    """In a reused Ray actor the third compiled net hit Dynamo's recompile limit (8 graphs of
    ``WRN.forward``) and trained eager, with a warning in a worker log nobody reads. Traced by Dynamo into its
    eager backend: Inductor's graphs, without Inductor's compile time."""
    graphs, options = [], []
    compile_ = torch.compile

    def traced(model, **kwargs):
        options.append(kwargs.get("options"))
        return compile_(model, backend=lambda graph, inputs: graphs.append(graph) or graph.forward)

    monkeypatch.setattr(torch, "compile", traced)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    monkeypatch.setattr(torch.compiler.config, "dynamic_sources", torch.compiler.config.dynamic_sources)
    per_trial = []
    for name in ("WRN-10-1", "WRN-10-2", "WRN-16-1", "WRN-13-1-B(3,1,3)", "WRN-10-0.5"):
        before = len(graphs)
        # Batches of 100: the last of 1294 images has 94 (on a CPU a batch under 16 picks another conv kernel).
        trainer = Trainer(WRNSpec.parse(name), digits,
                          TrainConfig(epochs=1, batch_size=100, compile=True, device="cpu", num_threads=1))
        assert trainer.fit().outcome == "completed"
        per_trial.append(len(graphs) - before)
    assert per_trial == [2] * 5  # train and eval: the batch dimension is dynamic from the first batch
    assert options == [{"compile_threads": 1}] * 5  # Inductor's workers: the trainer's threads, not min(32, cores)
