"""The pre-activation Wide ResNet, built from a :class:`~wrn_search.network.spec.WRNSpec`.

The architecture follows the official code (szagoruyko/wide-residual-networks):
every conv is preceded by BN-ReLU, dropout sits between the convs of a block,
and a 1x1 projection shortcut (fed by the block's pre-activated input) appears
only where the width or the resolution changes. The default initialisation is
torchvision's ResNet one (He fan-out convs, BN weight 1); ``init="official"``
is the official PyTorch code's (He fan-in convs and linear, BN weight U(0, 1)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wrn_search.network.spec import GROUP_STRIDES, INITS, STEM_WIDTH, WRNSpec


class WideBlock(nn.Module):
    """One residual block: BN-ReLU-conv per kernel in ``kernels``, dropout before all convs but the first."""

    def __init__(self, in_channels: int, out_channels: int, kernels: tuple[int, ...], stride: int, dropout: float):
        super().__init__()
        self.pre_act = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernels[0], stride, kernels[0] // 2, bias=False)
        layers: list[nn.Module] = []
        for kernel in kernels[1:]:
            layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Conv2d(out_channels, out_channels, kernel, 1, kernel // 2, bias=False))
        self.rest = nn.Sequential(*layers)
        needs_projection = in_channels != out_channels or stride != 1
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        activated = self.pre_act(x)
        identity = x if self.shortcut is None else self.shortcut(activated)
        return self.rest(self.conv1(activated)) + identity


class WideResNet(nn.Module):
    """Stem conv, three groups of :class:`WideBlock`, BN-ReLU, global average pool, linear."""

    def __init__(self, spec: WRNSpec, num_classes: int = 10, in_channels: int = 3, init: str = "torchvision"):
        super().__init__()
        self.spec = spec
        self.stem = nn.Conv2d(in_channels, STEM_WIDTH, 3, 1, 1, bias=False)
        groups = []
        channels = STEM_WIDTH
        for out_channels, stride in zip(spec.widths, GROUP_STRIDES):
            blocks = [
                WideBlock(channels if i == 0 else out_channels, out_channels, spec.kernels,
                          stride if i == 0 else 1, spec.dropout)
                for i in range(spec.blocks_per_group)
            ]
            groups.append(nn.Sequential(*blocks))
            channels = out_channels
        self.groups = nn.Sequential(*groups)
        self.head_act = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        """torchvision's ResNet init, or the official code's (its ``conv_params``, ``bnparams``, ``linear_params``)."""
        official = init == "official"
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in" if official else "fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight) if official else nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                if official:
                    nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head_act(self.groups(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model(spec: WRNSpec | str, num_classes: int = 10, in_channels: int = 3,
                init: str = "torchvision") -> WideResNet:
    """Build the WRN named by ``spec`` (a :class:`WRNSpec` or a name such as ``"WRN-28-10"``); ``init`` is
    "torchvision" or "official" (see the module docstring)."""
    if isinstance(spec, str):
        spec = WRNSpec.parse(spec)
    if num_classes < 1:
        raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels: must be >= 1, got {in_channels}")
    if init not in INITS:
        raise ValueError(f"init: must be one of {', '.join(INITS)}, got {init!r}")
    return WideResNet(spec, num_classes, in_channels, init)
