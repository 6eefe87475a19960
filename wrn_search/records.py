"""One vocabulary for what a trial is and how it ended, as every layer writes it (no torch, no Ray).

A trial's config (:class:`TrialConfig`) is what Tune hands the trainable, a benchmark table row and a
simulated trial carry; an epoch record (:class:`EpochRecord`) is one line of ``epochs.jsonl``; the
:class:`Outcome` is the study's ``outcome`` user attribute, the epoch records' and the tables' word.
"""

from __future__ import annotations

from enum import Enum
from typing import TypedDict


class Outcome(str, Enum):
    """How a trial (or one training run) ended. A ``str``: it compares, and is written to JSON, as its word."""

    #: Trained every epoch of the recipe.
    COMPLETED = "completed"
    #: Stopped at a rung by the scheduler; the study state is PRUNED and the trial may be continued.
    STOPPED_EARLY = "stopped_early"
    #: The training loss became NaN or infinite (study state FAIL).
    DIVERGED = "diverged"
    #: The net did not fit the device's or the host's memory (study state FAIL).
    OUT_OF_MEMORY = "out_of_memory"
    #: The trial crashed (or Ray lost it); study state FAIL, and ``resume`` runs it again.
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


#: How a training run itself can end (what ``Trainer.fit`` returns and a benchmark table records).
TRAINING_OUTCOMES = (Outcome.COMPLETED, Outcome.DIVERGED, Outcome.OUT_OF_MEMORY)
#: Training outcomes that end a trial as failed: training it longer would not help.
FAILED_OUTCOMES = (Outcome.DIVERGED, Outcome.OUT_OF_MEMORY)


class TrialConfig(TypedDict, total=False):
    """A trial's config: the net (``wrn_search.network.spec.SPEC_COLUMNS``), its exact costs, the searched
    training hyperparameters, and for a trial that continues a stopped one, where it continues from."""

    name: str
    depth: int
    blocks_per_group: int
    widen_factor: float
    block_type: str
    dropout: float
    params: int
    macs: int
    lr: float
    weight_decay: float
    batch_size: int
    #: The study trial number this trial continues from its checkpoint (``training.recipe.CONTINUES``).
    continues: int
    #: The epochs that trial trained already (``training.recipe.START_EPOCH``).
    start_epoch: int


class EpochRecord(TypedDict, total=False):
    """One line of ``epochs.jsonl`` (``wrn_search.runs.logs.EPOCH_SCHEMA`` checks the fields readers use)."""

    trial_id: str
    number: int | None
    name: str | None
    epoch: int
    train_loss: float
    val_error: float
    val_loss: float
    lr: float
    images_per_s: float
    epoch_seconds: float
    params: int
    macs: int
    outcome: str
    node_id: str
    resources: dict
    time: float
    #: An epoch trained again (restored from an older checkpoint than the newest); readers keep the last.
    retrained: bool
