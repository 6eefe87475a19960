"""The training recipe, :class:`TrainConfig`, and the check of every one of its fields, without torch.

``wrn-search train``, every search trial and the search-space loader build this one
dataclass, so a bad value is refused in one place with one message: a space's
``training:`` section is checked when the space loads, not three times per trial.
It lives apart from :mod:`wrn_search.training.engine` because loading a space must not import
torch (``wrn-search space`` starts in a fraction of a second).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from wrn_search.checks import is_number, require_bool, require_choice, require_int, require_number
from wrn_search.errors import BadInput
from wrn_search.network.spec import INITS

#: Batch augmentations (implemented by ``wrn_search.training.loader``, whose AUGMENTATIONS must equal this).
AUGMENTATIONS = ("crop_flip", "none")
SCHEDULES = ("step", "cosine")
PRECISIONS = ("auto", "bf16", "fp32")
#: CUDA compute capability (major) from which GPUs have native bf16 (Ampere): what precision "auto" picks there.
BF16_CUDA_MAJOR = 8
#: Torch device types a net trains on; ``device`` is "auto", a type, or a type and an index ("cuda:1").
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
#: The TrainConfig fields a search space may search (``dimensions:``); dropout, the other, is the spec's.
TRAINING_HYPERPARAMETERS = ("lr", "weight_decay", "batch_size")
#: Far beyond any real recipe (the paper trains 200 epochs of 128 images); larger is a typo, and would
#: overflow the epoch counts and budgets or the trainer's memory.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
#: What a trial config may set on top of the space's recipe: its searched values, and a benchmark table's seed.
TRIAL_FIELDS = (*TRAINING_HYPERPARAMETERS, "seed")
#: The keys of a trial config (and user attributes of its study trial) that continues a trial stopped early:
#: that trial's number, and the epoch it had reached; the new trial trains only the epochs after it.
CONTINUES = "continues"
START_EPOCH = "start_epoch"
#: Config fields that may change between a checkpoint and its resume (where and how fast, not what).
RUNTIME_FIELDS = frozenset({"precision", "channels_last", "compile", "device", "num_threads"})

#: ``check(value, where)`` raises a one-line ValueError starting with ``where`` unless ``value`` is allowed.
Check = Callable[[Any, str], Any]

_DEVICE = re.compile(rf"(?:{'|'.join(DEVICE_TYPES)})(?::\d+)?")


def _checked(default: Any, check: Check, help: str, parse: Callable[[str], Any],
             choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field whose values ``check`` validates: the field list is the one list of keys.

    ``help``, ``parse`` (the command-line type; ``bool`` gives ``--x/--no-x``) and ``choices``
    make it a flag of ``wrn-search train`` (:func:`wrn_search.cli.train.add_recipe_arguments`).
    """
    return field(default=default, metadata={"check": check, "help": help, "parse": parse, "choices": choices})


def _fractions(text: str) -> tuple[float, ...]:
    """``0.5,0.75`` from the command line."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise BadInput(f"must be comma-separated fractions such as 0.5,0.75, got {text!r}") from None


def _optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def _milestones(value: Any, where: str) -> None:
    if not (isinstance(value, (list, tuple)) and all(is_number(m) and 0 < m < 1 for m in value)
            and list(value) == sorted(set(value))):
        raise BadInput(f"{where}: must be increasing fractions of the epochs in (0, 1), got {value!r}")


def _device(value: Any, where: str) -> None:
    if value != "auto" and not (isinstance(value, str) and _DEVICE.fullmatch(value)):
        raise BadInput(f"{where}: {value!r} is not 'auto' or a device: {', '.join(DEVICE_TYPES)}, "
                       "optionally with an index such as 'cuda:1'")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (paper defaults) and where to run it; every field is checked on construction."""

    epochs: int = _checked(200, lambda value, where: require_int(value, where, 1, MAX_EPOCHS), "epochs (default 200)",
                           int)
    batch_size: int = _checked(128, lambda value, where: require_int(value, where, 1, MAX_BATCH_SIZE),
                               "batch size (default 128)", int)
    lr: float = _checked(0.1, lambda value, where: require_number(value, where, 0, open_low=True),
                         "initial learning rate (default 0.1)", float)
    momentum: float = _checked(0.9, lambda value, where: require_number(value, where, 0, 1, open_high=True),
                               "SGD momentum (default 0.9)", float)
    nesterov: bool = _checked(True, require_bool, "Nesterov momentum (default on)", bool)
    weight_decay: float = _checked(5e-4, lambda value, where: require_number(value, where, 0),
                                   "weight decay (default 5e-4)", float)
    #: "step": lr x ``gamma`` at each of ``milestones`` (fractions of ``epochs``); "cosine": cosine to 0.
    schedule: str = _checked("step", lambda value, where: require_choice(value, where, SCHEDULES),
                             "lr x gamma at the milestones (step, default) or cosine to 0", str, SCHEDULES)
    milestones: tuple[float, ...] = _checked((0.3, 0.6, 0.8), _milestones,
                                             "step schedule: fractions of the epochs, e.g. 0.5,0.75 "
                                             "(default 0.3,0.6,0.8: epochs 60/120/160 of 200)", _fractions)
    gamma: float = _checked(0.2, lambda value, where: require_number(value, where, 0, 1, open_low=True),
                            "step schedule: lr factor at each milestone (default 0.2)", float)
    label_smoothing: float = _checked(0.0, lambda value, where: require_number(value, where, 0, 1, open_high=True),
                                      "label smoothing (default 0)", float)
    #: Batch augmentation, "crop_flip" or "none"; None takes the dataset's default.
    augment: str | None = _checked(None, _optional(lambda value, where: require_choice(value, where, AUGMENTATIONS)),
                                   "default: the dataset's (crop_flip for CIFAR, none for SVHN)", str, AUGMENTATIONS)
    #: "torchvision": He fan-out convs, BN weight 1; "official": as the paper's PyTorch code (He fan-in
    #: convs and linear, BN weight U(0, 1)).
    init: str = _checked("torchvision", lambda value, where: require_choice(value, where, INITS),
                         "weight init: torchvision (default) or official (the paper's code)", str, INITS)
    #: "auto" (bf16 autocast where the device supports it), "bf16" or "fp32".
    precision: str = _checked("auto", lambda value, where: require_choice(value, where, PRECISIONS),
                              "auto (default): bf16 autocast where the device has native bf16", str, PRECISIONS)
    #: None: channels_last on (it pays off on GPUs and on oneDNN CPUs).
    channels_last: bool | None = _checked(None, _optional(require_bool), "channels_last memory format (default on)",
                                          bool)
    compile: bool = _checked(False, require_bool, "torch.compile the model (default off)", bool)
    #: "auto" (CUDA if available, else CPU) or a device such as "cpu" or "cuda:1".
    device: str = _checked("auto", _device, "auto (default), cpu, cuda, cuda:1, ...", str)
    seed: int = _checked(0, lambda value, where: require_int(value, where, 0),
                         "seed of initialisation, shuffling and dropout (default 0)", int)
    #: Sets torch's intra-op threads (process-wide) when given; None leaves them alone.
    num_threads: int | None = _checked(None, _optional(lambda value, where: require_int(value, where, 1)),
                                       "CPU threads for torch (default: torch's)", int)

    def __post_init__(self) -> None:
        for spec in fields(self):
            spec.metadata["check"](getattr(self, spec.name), spec.name)
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if self.nesterov and self.momentum == 0:
            raise BadInput("nesterov: needs momentum > 0")

    @classmethod
    def check(cls, name: str, value: Any, where: str) -> None:
        """Check ``value`` for field ``name`` alone (a searched range's end); the message starts with ``where``."""
        next(spec for spec in fields(cls) if spec.name == name).metadata["check"](value, where)

    def for_trial(self, config: dict) -> TrainConfig:
        """This recipe with a trial config's searched hyperparameters (and a table's seed) on top."""
        return replace(self, **{key: config[key] for key in TRIAL_FIELDS if key in config})

    def to_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones)}

    def overrides(self) -> dict:
        """The fields that differ from the paper's defaults: what a space's ``training:`` section writes."""
        default = TrainConfig().to_dict()
        return {key: value for key, value in self.to_dict().items() if value != default[key]}

    def recipe(self) -> dict:
        """The fields that decide the result; a checkpoint resumes only under the same recipe."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
