"""Architecture spec of a Wide Residual Network and its closed-form cost model.

A :class:`WRNSpec` names one pre-activation WRN (Zagoruyko & Komodakis, 2016) by
its blocks per group N, widen factor k, block kernel tuple M and dropout rate.
The cost model (parameters, multiply-accumulates, activation memory) is computed
from the spec alone, without building the network, so a search can evaluate
millions of candidates; ``tests/test_spec.py`` checks it against the built module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wrn_search.checks import is_int, require_int, require_number, shown
from wrn_search.errors import BadInput

#: Channel widths of the stem and of the three groups before widening.
STEM_WIDTH = 16
BASE_WIDTHS = (16, 32, 64)
GROUP_STRIDES = (1, 2, 2)
#: Decimal places kept of a fractional widen factor and of the dropout rate.
DECIMALS = 4
#: Upper bounds of a spec, far beyond any net that trains, so absurd input is one line, not a 400-digit table.
MAX_BLOCKS_PER_GROUP = 10_000
#: The widest: no net with k above ~600 has fewer than a billion params anyway.
MAX_WIDEN_FACTOR = 1000
MAX_KERNEL = 31
#: What describes a net in a trial config, a study trial's user attributes, results and benchmark tables.
#: Weight initialisations the builder knows: torchvision's ResNet init, or the paper's code (``official``).
INITS = ("torchvision", "official")
SPEC_COLUMNS = ("name", "depth", "blocks_per_group", "widen_factor", "block_type", "dropout")

_NAME_RE = re.compile(
    r"^WRN-(?P<depth>\d+)-(?P<k>\d+(?:\.\d+)?)"
    r"(?:-B\((?P<kernels>[^)]*)\))?"
    r"(?:-d(?P<dropout>\d*\.?\d+))?$",
    re.IGNORECASE,
)


def group_widths(widen_factor: float) -> tuple[int, int, int]:
    """Output channels of the three groups: ``round(16k), round(32k), round(64k)``."""
    return tuple(max(1, int(round(base * widen_factor))) for base in BASE_WIDTHS)  # type: ignore[return-value]


def format_number(value: float) -> str:
    """``10`` for integral values, ``2.5`` otherwise: the form used in names."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_block_type(kernels: tuple[int, ...]) -> str:
    return "B(" + ",".join(str(k) for k in kernels) + ")"


def parse_block_type(text: str, field: str = "kernels") -> tuple[int, ...]:
    """Parse ``B(3,1,3)`` (or ``3,1,3``) into a validated kernel tuple."""
    inner = text.strip()
    match = re.fullmatch(r"B\((.*)\)", inner, re.IGNORECASE)
    if match:
        inner = match.group(1)
    try:
        kernels = tuple(int(part) for part in inner.split(","))
    except ValueError:
        raise BadInput(f"{field}: {text!r} is not a block type; expected e.g. 'B(3,3)' or 'B(1,3,1)'") from None
    validate_kernels(kernels, field)
    return kernels


def validate_kernels(kernels: tuple[int, ...], field: str = "kernels") -> None:
    if not kernels:
        raise BadInput(f"{field}: a block needs at least one kernel, e.g. B(3,3)")
    for size in kernels:
        if not is_int(size) or size < 1 or size > MAX_KERNEL or size % 2 == 0:
            raise BadInput(f"{field}: kernel sizes must be odd integers from 1 to {MAX_KERNEL}, got "
                           f"{shown(size)}")


def round_widen_factor(value: Any, where: str = "widen_factor") -> float:
    """``value`` as a spec keeps it: a number > 0 rounded to DECIMALS places, an int when integral.

    Names carry k to DECIMALS places, so ``WRNSpec.parse(spec.name) == spec``; a search space
    rounds its widen factors the same way, so each one is exactly the k of the nets it names.
    """
    k = round(float(require_number(value, where, 0, MAX_WIDEN_FACTOR, open_low=True)), DECIMALS)
    if k <= 0:
        raise BadInput(f"{where}: must be >= {10**-DECIMALS}, got {value!r}")
    return int(k) if k.is_integer() else k


def valid_depths_near(depth: int, convs_per_block: int) -> tuple[int, ...]:
    """The valid depths 3*N*l+4 (N >= 1) closest below and above ``depth``."""
    step = 3 * convs_per_block
    below = (depth - 4) // step
    candidates = {max(1, below), below + 1}
    return tuple(sorted(3 * n * convs_per_block + 4 for n in candidates))


@dataclass(frozen=True)
class WRNSpec:
    """One pre-activation WRN: ``WRN-d-k-B(M)`` with d = 3*N*l + 4, l = len(M).

    ``widen_factor`` may be fractional; channel counts are then rounded to the
    nearest integer, so integer k reproduces the paper's networks exactly.
    """

    blocks_per_group: int
    widen_factor: float = 1
    kernels: tuple[int, ...] = (3, 3)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        require_int(self.blocks_per_group, "blocks_per_group", 1, MAX_BLOCKS_PER_GROUP)
        object.__setattr__(self, "widen_factor", round_widen_factor(self.widen_factor))
        kernels = tuple(self.kernels) if isinstance(self.kernels, (list, tuple)) else self.kernels
        if not isinstance(kernels, tuple):
            raise BadInput(f"kernels: must be a tuple of odd integers, got {self.kernels!r}")
        validate_kernels(kernels)
        object.__setattr__(self, "kernels", kernels)
        p = require_number(self.dropout, "dropout", 0, 1, open_high=True)
        if p and len(kernels) == 1:
            raise BadInput(f"dropout: {format_block_type(kernels)} has one conv per block and dropout sits between "
                           f"a block's convs; use dropout 0 or a block of two or more convs")
        object.__setattr__(self, "dropout", round(float(p), DECIMALS))  # names carry it exactly, like k

    # -- naming ---------------------------------------------------------------

    @classmethod
    def from_depth(
        cls, depth: int, widen_factor: float = 1, kernels: tuple[int, ...] = (3, 3), dropout: float = 0.0
    ) -> WRNSpec:
        """Build from the depth d = 3*N*l + 4; an invalid depth names the nearest valid ones."""
        kernels = tuple(kernels)
        validate_kernels(kernels)
        l = len(kernels)  # noqa: E741 - the paper's name for convs per block
        highest = 3 * l * MAX_BLOCKS_PER_GROUP + 4
        if is_int(depth) and depth > highest:
            raise BadInput(f"depth: at most {highest:,} for {format_block_type(kernels)}, got {shown(depth)}")
        if not is_int(depth) or depth < 3 * l + 4 or (depth - 4) % (3 * l):
            near = " or ".join(str(d) for d in valid_depths_near(int(depth) if isinstance(depth, int) else 4, l))
            raise BadInput(
                f"depth: {depth!r} is not 3*N*l+4 for {format_block_type(kernels)} (l={l}); "
                f"nearest valid depths: {near}"
            )
        return cls((depth - 4) // (3 * l), widen_factor, kernels, dropout)

    @classmethod
    def parse(cls, name: str, dropout: float | None = None) -> WRNSpec:
        """Parse ``WRN-28-10``, ``WRN-28-10-B(3,3)``, ``WRN-40-2-B(3,1,3)-d0.3``.

        ``dropout`` given as a keyword overrides a ``-dP`` suffix.
        """
        match = _NAME_RE.match(name.strip()) if isinstance(name, str) else None
        if not match:
            raise BadInput(
                f"name: {name!r} is not a WRN name; expected WRN-<depth>-<k>[-B(<kernels>)][-d<dropout>], "
                "e.g. WRN-28-10 or WRN-40-2-B(3,1,3)-d0.3"
            )
        kernels = parse_block_type(match["kernels"]) if match["kernels"] is not None else (3, 3)
        widen = float(match["k"])
        if dropout is None:
            dropout = float(match["dropout"]) if match["dropout"] is not None else 0.0
        return cls.from_depth(int(match["depth"]), widen, kernels, dropout)

    @property
    def convs_per_block(self) -> int:
        return len(self.kernels)

    @property
    def depth(self) -> int:
        return 3 * self.blocks_per_group * self.convs_per_block + 4

    @property
    def block_type(self) -> str:
        """``B(3,3)``: the block type, as names, spaces and results write it; ``kernels`` holds its kernel sizes."""
        return format_block_type(self.kernels)

    @property
    def name(self) -> str:
        """``WRN-d-k-B(M)``, with ``-dP`` appended when dropout is on; ``parse`` reads it back."""
        base = f"WRN-{self.depth}-{format_number(self.widen_factor)}-{self.block_type}"
        return base + (f"-d{self.dropout:g}" if self.dropout else "")

    @property
    def widths(self) -> tuple[int, int, int]:
        return group_widths(self.widen_factor)

    @property
    def num_conv_layers(self) -> int:
        """Convolutions on the main path (stem + blocks), not counting 1x1 shortcuts."""
        return 1 + 3 * self.blocks_per_group * self.convs_per_block

    def columns(self) -> dict:
        """The spec as trial configs, study trials, results and tables carry it: the :data:`SPEC_COLUMNS`."""
        return {key: getattr(self, key) for key in SPEC_COLUMNS}

    @classmethod
    def from_columns(cls, row: dict) -> WRNSpec:
        """The spec a trial config (or a results or table row) carries in its :data:`SPEC_COLUMNS`."""
        kernels = parse_block_type(row["block_type"], "block_type")
        return cls(int(row["blocks_per_group"]), row["widen_factor"], kernels, row["dropout"])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "depth": self.depth,
            "blocks_per_group": self.blocks_per_group,
            "widen_factor": self.widen_factor,
            "kernels": list(self.kernels),
            "dropout": self.dropout,
        }

    @classmethod
    def from_dict(cls, data: dict) -> WRNSpec:
        return cls(int(data["blocks_per_group"]), data["widen_factor"], tuple(data["kernels"]),
                   data.get("dropout", 0.0))

    def __str__(self) -> str:
        return self.name

    # -- cost model -----------------------------------------------------------

    def num_params(self, num_classes: int = 10, in_channels: int = 3) -> int:
        """Trainable parameters of ``build_model(self, num_classes, in_channels)``."""
        return count_params(self.blocks_per_group, self.widths, self.kernels, num_classes, in_channels)

    def macs(self, input_size: int | tuple[int, int] = 32, num_classes: int = 10, in_channels: int = 3) -> int:
        """Multiply-accumulates of one forward pass of one image (convolutions and the linear layer)."""
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        return count_macs(self.blocks_per_group, self.widths, self.kernels, height, width, num_classes, in_channels)

    def activation_elements(self, input_size: int | tuple[int, int] = 32) -> int:
        """Feature-map elements autograd keeps per image during training (an estimate).

        Each BN-ReLU-conv unit keeps its BN input and its ReLU output (the conv
        input); dropout keeps a mask. Shortcut outputs are added in place.
        """
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        elements = STEM_WIDTH * height * width
        channels = STEM_WIDTH
        for out_channels, stride in zip(self.widths, GROUP_STRIDES):
            for block in range(self.blocks_per_group):
                s = stride if block == 0 else 1
                elements += 2 * channels * height * width  # BN input + ReLU output of the first unit
                height, width = _strided(height, s), _strided(width, s)
                per_map = out_channels * height * width
                dropout_masks = (self.convs_per_block - 1) if self.dropout else 0
                elements += per_map * (1 + 2 * (self.convs_per_block - 1) + dropout_masks)
                channels = out_channels
        return elements + 2 * channels * height * width

    def train_memory_bytes(self, input_size: int | tuple[int, int] = 32, batch_size: int = 128,
                           bytes_per_element: int = 2, num_classes: int = 10, in_channels: int = 3) -> int:
        """Rough training memory: activations for a batch plus weights, grads and momentum in fp32.

        ``bytes_per_element`` is the activations' precision: 2 under bf16 autocast, 4 in fp32.
        """
        weights = 4 * 3 * self.num_params(num_classes, in_channels)
        return batch_size * bytes_per_element * self.activation_elements(input_size) + weights


def _strided(size: int, stride: int) -> int:
    """Output size of a conv with odd kernel k, padding k//2 and this stride."""
    return (size - 1) // stride + 1


def count_params(
    n: int, widths: tuple[int, int, int], kernels: tuple[int, ...], num_classes: int = 10, in_channels: int = 3
) -> int:
    """Closed-form parameter count; see :meth:`WRNSpec.num_params`."""
    total = in_channels * STEM_WIDTH * 9
    channels = STEM_WIDTH
    first_kernel_area = kernels[0] * kernels[0]
    rest_kernel_area = sum(k * k for k in kernels[1:])
    rest_convs = len(kernels) - 1
    for out_channels, stride in zip(widths, GROUP_STRIDES):
        # First block: BN on the input width, first conv changes the width, maybe a 1x1 shortcut.
        total += 2 * channels + channels * out_channels * first_kernel_area
        if channels != out_channels or stride != 1:
            total += channels * out_channels
        # Every block: the remaining BN-conv units at the output width.
        unit_rest = 2 * out_channels * rest_convs + out_channels * out_channels * rest_kernel_area
        total += n * unit_rest
        # Blocks 2..N: first unit at the output width, identity shortcut.
        total += (n - 1) * (2 * out_channels + out_channels * out_channels * first_kernel_area)
        channels = out_channels
    return total + 2 * channels + channels * num_classes + num_classes


def count_macs(
    n: int,
    widths: tuple[int, int, int],
    kernels: tuple[int, ...],
    height: int,
    width: int,
    num_classes: int = 10,
    in_channels: int = 3,
) -> int:
    """Closed-form forward multiply-accumulates; see :meth:`WRNSpec.macs`."""
    total = height * width * in_channels * STEM_WIDTH * 9
    channels = STEM_WIDTH
    first_kernel_area = kernels[0] * kernels[0]
    rest_kernel_area = sum(k * k for k in kernels[1:])
    for out_channels, stride in zip(widths, GROUP_STRIDES):
        height, width = _strided(height, stride), _strided(width, stride)
        pixels = height * width
        total += pixels * channels * out_channels * first_kernel_area
        if channels != out_channels or stride != 1:
            total += pixels * channels * out_channels
        total += n * pixels * out_channels * out_channels * rest_kernel_area
        total += (n - 1) * pixels * out_channels * out_channels * first_kernel_area
        channels = out_channels
    return total + channels * num_classes
