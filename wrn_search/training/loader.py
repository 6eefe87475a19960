"""A data loader that keeps the whole dataset on the training device.

CIFAR-sized datasets fit in GPU memory as uint8 many times over, so instead of
decoding and augmenting image by image in worker processes (torch's DataLoader),
the loader indexes, normalises, crops and flips whole batches with tensor ops
on the device, in the style of airbench's ``CifarLoader``. Every random draw of
an epoch comes from a generator seeded by ``(seed, epoch)``: the loader's whole
state is two integers, and a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wrn_search.checks import require_choice, require_int
from wrn_search.errors import BadInput

AUGMENTATIONS = ("crop_flip", "none")

#: Reflection padding of the random crop, in pixels (the WRN paper's CIFAR recipe).
CROP_PADDING = 4


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for one stream (e.g. one epoch) of a seeded run."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class DeviceLoader:
    """Iterates ``(x, y)`` batches: float32 normalised images and int64 labels, on ``device``.

    ``images`` is uint8 ``[N, C, H, W]`` (read-only numpy arrays are fine: they
    are copied once, straight to the device). ``mean`` and ``std`` are per
    channel on the 0..1 scale. ``augment="crop_flip"`` takes a random 4-pixel
    reflect-padded crop and flips half of the images horizontally.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: str = "none",
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
    ):
        require_int(batch_size, "batch_size", 1)
        require_choice(augment, "augment", AUGMENTATIONS)
        self.device = torch.device(device)
        self.images = torch.tensor(images, dtype=torch.uint8, device=self.device)
        self.labels = torch.tensor(labels, dtype=torch.int64, device=self.device)
        if self.images.ndim != 4 or self.labels.shape != self.images.shape[:1]:
            raise BadInput(f"images: need [N, C, H, W] with N labels, got {tuple(self.images.shape)} images "
                           f"and {tuple(self.labels.shape)} labels")
        channels = self.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise BadInput(f"mean/std: need {channels} values each, got {len(mean)} and {len(std)}")
        if augment == "crop_flip" and min(self.images.shape[2:]) <= CROP_PADDING:
            raise BadInput(f"augment: crop_flip needs images larger than {CROP_PADDING} pixels")
        # Normalise in the 0..255 domain: (x - 255 mean) / (255 std).
        self._shift = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self._scale = 1 / (torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255)
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images yielded per epoch (all of them unless ``drop_last`` cuts a partial batch)."""
        return len(self) * self.batch_size if self.drop_last else len(self.labels)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch. It counts as drawn once iteration starts, so ``state_dict`` then points at the next."""
        n = len(self.labels)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        self.epoch += 1
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        if self.augment == "crop_flip":
            height, width = self.images.shape[2:]
            # Offsets into the padded image, drawn for the whole epoch at once: no host sync per batch.
            rows = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(self.device)
            cols = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(self.device)
            flips = (torch.rand(n, generator=generator) < 0.5).to(self.device)
            row_range = torch.arange(height, device=self.device)
            col_range = torch.arange(width, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            x = (self.images[index].float() - self._shift) * self._scale
            if self.augment == "crop_flip":
                x = crop_flip(x, rows[index], cols[index], flips[index], row_range, col_range)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[index]


def crop_flip(x: Tensor, rows: Tensor, cols: Tensor, flips: Tensor, row_range: Tensor, col_range: Tensor) -> Tensor:
    """Per-image crop at offset ``(rows, cols)`` of the reflect-padded batch, mirrored where ``flips``.

    One gather for the whole batch: the flip is folded into the column indices.
    """
    padded = F.pad(x, (CROP_PADDING,) * 4, mode="reflect")
    width = col_range.numel()
    col_index = torch.where(flips[:, None], width - 1 - col_range, col_range) + cols[:, None]  # [B, W]
    row_index = row_range + rows[:, None]  # [B, H]
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, row_index[:, None, :, None], col_index[:, None, None, :]]
