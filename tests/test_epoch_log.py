"""epochs.jsonl holds every trained epoch once: a report repeated after a resume is not logged again,
an epoch trained again is marked, an epoch whose line a kill lost comes from the trial's checkpoint."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import torch

from wrn_search.runs.checkpoints import dirname, write_epoch
from wrn_search.runs.files import read_jsonl
from wrn_search.runs.layout import RunManifest
from wrn_search.runs.logs import EPOCH_SCHEMA
from wrn_search.search.epoch_logger import EpochLogger
from wrn_search.training.checkpoint_format import CHECKPOINT_FILE
from wrn_search.training.recipe import START_EPOCH


def result(epoch: int, seconds: float = 0.5, val_error: float = 0.25) -> dict:
    return {"epoch": epoch, "train_loss": 0.4, "val_error": val_error, "val_loss": float("nan"), "lr": 0.1,
            "images_per_s": 900.0, "epoch_seconds": seconds, "params": 5000, "macs": 9000,
            "outcome": "completed", "node_id": "n1"}


def trial(trial_id: str, number: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"number": number, "name": "WRN-10-1"},
                           placement_group_factory=SimpleNamespace(required_resources={"CPU": 1}))


def logged(run_dir) -> list[tuple]:
    records = read_jsonl(run_dir / "epochs.jsonl", EPOCH_SCHEMA)
    return [(record["number"], record["epoch"], record.get("retrained", False)) for record in records]


def session(run_dir) -> EpochLogger:
    """The logger as a resumed session gets it: unpickled from Tune's snapshot, then set up by Tune."""
    logger = pickle.loads(pickle.dumps(EpochLogger(run_dir)))
    logger.setup()
    return logger


def test_the_last_epoch_reported_again_after_a_resume_is_logged_once(tmp_path):
    first = session(tmp_path)
    for epoch in (1, 2, 3):
        first.on_trial_result(epoch, [], trial("a0", 0), result(epoch))
    # The driver was killed before Tune recorded the trial's end; the resumed trial reports epoch 3 again,
    # from another node and as a new Ray trial of the same study trial.
    second = session(tmp_path)
    second.on_trial_result(1, [], trial("b7", 0), {**result(3), "node_id": "n2"})
    second.on_trial_result(1, [], trial("b7", 0), result(3))
    assert logged(tmp_path) == [(0, 1, False), (0, 2, False), (0, 3, False)]


def test_an_epoch_trained_again_is_logged_and_marked(tmp_path):
    first = session(tmp_path)
    for epoch in (1, 2, 3):
        first.on_trial_result(epoch, [], trial("a0", 0), result(epoch))
    first.on_trial_result(1, [], trial("a1", 1), result(1))
    second = session(tmp_path)  # restored from the epoch-1 checkpoint: epochs 2 and 3 train again
    second.on_trial_result(1, [], trial("a0", 0), result(2, seconds=0.7))
    second.on_trial_result(2, [], trial("a0", 0), result(3, seconds=0.6, val_error=0.2))
    second.on_trial_result(1, [], trial("a1", 1), result(2))
    assert logged(tmp_path) == [(0, 1, False), (0, 2, False), (0, 3, False), (1, 1, False),
                                (0, 2, True), (0, 3, True), (1, 2, False)]


def test_an_epoch_whose_line_a_kill_lost_is_taken_from_the_checkpoint(tmp_path):
    """The driver died after the trial checkpointed epoch 3 but before it logged it; the trial continues at 4."""
    RunManifest(name="r", study_name="r-1", storage="sqlite:///x.db", objectives=["val_error"],
                directions=["minimize"], tune_path=str(tmp_path / "tune"), dataset="digits", epochs=4,
                samples=1).save(tmp_path)
    folder = tmp_path / "tune" / dirname(trial("a0", 0).config, "a0") / "checkpoint_000002"
    folder.mkdir(parents=True)
    torch.save({"history": [{**result(epoch), "node_id": None} for epoch in (1, 2, 3)]}, folder / CHECKPOINT_FILE)
    write_epoch(folder, 3)
    first = session(tmp_path)
    for epoch in (1, 2):
        first.on_trial_result(epoch, [], trial("a0", 0), result(epoch))
    session(tmp_path).on_trial_result(1, [], trial("b1", 0), result(4))
    assert logged(tmp_path) == [(0, 1, False), (0, 2, False), (0, 3, False), (0, 4, False)]
    assert read_jsonl(tmp_path / "epochs.jsonl")[2]["val_error"] == result(3)["val_error"]


def checkpointed(tmp_path, number: int, epochs: tuple[int, ...]) -> None:
    """A run whose trial ``number`` checkpointed ``epochs`` (their metrics in the checkpoint's history)."""
    RunManifest(name="r", study_name="r-1", storage="sqlite:///x.db", objectives=["val_error"],
                directions=["minimize"], tune_path=str(tmp_path / "tune"), dataset="digits", epochs=4,
                samples=1).save(tmp_path)
    folder = tmp_path / "tune" / dirname(trial("a0", number).config, "a0") / f"checkpoint_{max(epochs) - 1:06d}"
    folder.mkdir(parents=True)
    torch.save({"history": [{**result(epoch), "node_id": None} for epoch in epochs]}, folder / CHECKPOINT_FILE)
    write_epoch(folder, max(epochs))


def test_a_first_epoch_whose_line_a_full_disk_lost_is_taken_from_the_checkpoint(tmp_path):
    """The disk filled after the trial checkpointed epoch 1 and before the driver logged it: no line yet."""
    checkpointed(tmp_path, 0, (1,))
    session(tmp_path).on_trial_result(1, [], trial("b1", 0), result(2))
    assert logged(tmp_path) == [(0, 1, False), (0, 2, False)]


def test_a_trial_continuing_one_stopped_early_logs_only_its_own_epochs(tmp_path):
    """Trial 1 continues trial 0, stopped at epoch 2: its first report is epoch 3, nothing below is missing."""
    checkpointed(tmp_path, 1, (1, 2, 3))
    continuing = SimpleNamespace(trial_id="c1", config={"number": 1, "name": "WRN-10-1", START_EPOCH: 2},
                                 placement_group_factory=SimpleNamespace(required_resources={"CPU": 1}))
    session(tmp_path).on_trial_result(1, [], continuing, result(3))
    assert logged(tmp_path) == [(1, 3, False)]
