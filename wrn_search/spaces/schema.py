"""The schema of a search space file: its sections, the allowed words, and the caps on every size.

What a space can describe is capped (file size, YAML nesting, depth, widen factor,
params per net, number of nets), and every cap is checked before anything of that
size is built, so a typo is a one-line error, not minutes of work and an exhausted memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from wrn_search.training.data import Dataset, load_dataset
from wrn_search.training.recipe import TRAINING_HYPERPARAMETERS

OBJECTIVES = ("val_error", "params", "macs")
SAMPLERS = ("tpe", "nsga2", "random", "grid", "gp", "qmc")
SCHEDULERS = ("moasha", "asha", "hyperband", "median", "none")
ARCHITECTURE_DIMENSIONS = ("depth", "blocks_per_group", "widen_factor", "block_types")
#: Searched hyperparameters besides the architecture: the spec's dropout, and TrainConfig fields.
HYPERPARAMETERS = ("dropout", *TRAINING_HYPERPARAMETERS)
SECTIONS = ("dimensions", "architectures", "dataset", "training", "budget", "search", "resources")
#: More allowed widen factors (or values of a searched hyperparameter, or points of a grid) than this is a
#: typo in a step, not a search space.
MAX_GRID = 100_000
#: More feasible architectures than this is a typo too; ``wrn-search space`` and a study's first trials
#: go through all of them.
MAX_ARCHITECTURES = 100_000
#: The deepest net a space may hold (d = 3*N*l + 4; the paper's deepest WRN is 40, pre-activation ResNets 1001).
MAX_DEPTH = 1000
#: The most trainable parameters of one net: 12 GB of fp32 weights, gradients and momentum before activations.
MAX_PARAMS = 1_000_000_000
#: Counts (MACs) are stored as int64.
MAX_COUNT = 2**63 - 1
#: A search space is a small YAML file; its data is nested a few levels deep.
MAX_SPACE_BYTES = 2**20
MAX_NESTING = 20
#: Trials of one search (a simulated one replays 1,000 in seconds), and their epochs in all.
MAX_SAMPLES = 1_000_000
MAX_EPOCH_BUDGET = 1_000_000_000
#: Trials at once: more than any cluster runs.
MAX_CONCURRENT = 100_000
#: The largest seed numpy's legacy generators (Optuna's samplers) take.
MAX_SEED = 2**32 - 1


def config_key(config: dict, hyperparameters: tuple[str, ...]) -> tuple:
    """What identifies a configuration, in a study and in a table: its WRN name (dropout included) and its
    training hyperparameters."""
    return (config["name"], *(round(float(config[name]), 10) for name in hyperparameters))


@dataclass(frozen=True)
class DatasetSection:
    name: str = "cifar10"
    root: str | None = None
    download: bool = False
    val_fraction: float = 0.1
    #: SVHN only: add the 531k ``extra`` images to the training set, as the paper does.
    extra: bool = False

    def load(self, seed: int) -> Dataset:
        """The dataset with its seeded validation split (torch-free: numpy arrays)."""
        return load_dataset(self.name, root=self.root, download=self.download, val_fraction=self.val_fraction,
                            seed=seed, **({"extra": True} if self.extra else {}))


@dataclass(frozen=True)
class SearchSettings:
    objectives: tuple[str, ...] = ("val_error", "params")
    sampler: str = "tpe"
    #: Resolved on load: "moasha" with several objectives, "asha" with one.
    scheduler: str | None = None
    samples: int = 32
    #: Total training epochs of all trials; no new trial starts once they are spent. None: unlimited.
    epoch_budget: int | None = None
    max_concurrent: int = 2
    seed: int = 0
    grace_period: int = 1
    reduction_factor: float = 3


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1
    #: A number (fractions share a GPU) or "auto": a GPU share sized from the cost model (resources.AutoGPUResources).
    gpus_per_trial: float | str = 0


# -- loading --------------------------------------------------------------------


# -- small validators; messages name the key and what is allowed ------------------


