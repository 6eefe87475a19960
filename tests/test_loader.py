"""The device-resident loader: shapes, normalisation, epoch coverage, augmentation statistics, RNG state."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wrn_search.training.loader import CROP_PADDING, DeviceLoader

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def make_data(n: int = 300, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images and labels 0..n-1, so each label identifies its image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), np.arange(n, dtype=np.int64)


def loader(images, labels, **kwargs) -> DeviceLoader:
    return DeviceLoader(images, labels, kwargs.pop("batch_size", 64), MEAN, STD, **kwargs)


def pixels(x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: back to 0..255."""
    return x * torch.tensor(STD).view(1, 3, 1, 1) * 255 + torch.tensor(MEAN).view(1, 3, 1, 1) * 255


@pytest.mark.parametrize("drop_last,batches,last", [(False, 5, 44), (True, 4, 64)])
def test_batch_shapes_and_length(drop_last, batches, last):
    images, labels = make_data()
    data = loader(images, labels, drop_last=drop_last, channels_last=True)
    out = list(data)
    assert len(data) == len(out) == batches
    assert all(x.shape == (64, 3, 12, 12) for x, _ in out[:-1]) and out[-1][0].shape[0] == last
    x, y = out[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert data.num_samples == sum(len(y) for _, y in out)


def test_normalisation_round_trips_to_the_pixels():
    images, labels = make_data()
    x, y = next(iter(loader(images, labels, shuffle=False)))
    assert torch.allclose(pixels(x), torch.from_numpy(images[:64]).float(), atol=1e-3)
    assert y.tolist() == list(range(64))
    # Normalised values span what mean/std imply: (0 - 255 m) / (255 s) .. (255 - 255 m) / (255 s).
    assert x.min() >= (0 - MEAN[2]) / STD[0] - 1e-4 and x.max() <= (1 - MEAN[0]) / STD[0] + 1e-4


def test_every_sample_once_per_epoch_in_a_new_order():
    images, labels = make_data()
    data = loader(images, labels, augment="crop_flip")
    orders = [torch.cat([y for _, y in data]) for _ in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(300))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert data.epoch == 3


def test_same_seed_same_batches_and_state_dict_resumes():
    images, labels = make_data()
    first = loader(images, labels, augment="crop_flip", seed=7)
    epochs = [[(x.clone(), y.clone()) for x, y in first] for _ in range(3)]
    resumed = loader(images, labels, augment="crop_flip", seed=0)
    resumed.load_state_dict({"seed": 7, "epoch": 2})
    for (x, y), (x2, y2) in zip(epochs[2], resumed):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other = loader(images, labels, augment="crop_flip", seed=8)
    assert not torch.equal(next(iter(other))[1], epochs[0][0][1])


def test_crops_stay_inside_the_padded_image_and_half_are_flipped():
    images, labels = make_data(n=1000)
    data = loader(images, labels, augment="crop_flip", batch_size=250)
    x, y = map(torch.cat, zip(*data))
    source = torch.from_numpy(images)[y].float()
    padded = F.pad(source, (CROP_PADDING,) * 4, mode="reflect")
    # Every 12x12 window of the padded image: [N, C, 9, 9, 12, 12].
    windows = padded.unfold(2, 12, 1).unfold(3, 12, 1)
    crops = pixels(x).round()[:, :, None, None]
    plain = (windows - crops).abs().amax(dim=(1, 4, 5)) < 0.5
    mirrored = (windows - crops.flip(-1)).abs().amax(dim=(1, 4, 5)) < 0.5
    found = plain.flatten(1).any(1) | mirrored.flatten(1).any(1)
    assert found.all(), "some crops are not a window of the reflect-padded image"
    flipped = mirrored.flatten(1).any(1) & ~plain.flatten(1).any(1)
    assert 0.45 < flipped.float().mean() < 0.55
    offsets = (plain | mirrored).float().mean(0)  # share of images at each of the 9 x 9 offsets
    assert offsets.min() > 0.3 / 81 and offsets.max() < 3 / 81


def test_no_augmentation_is_the_identity():
    images, labels = make_data()
    x, y = map(torch.cat, zip(*loader(images, labels, augment="none")))
    assert torch.allclose(pixels(x), torch.from_numpy(images)[y].float(), atol=1e-3)


def test_read_only_arrays_are_accepted_without_warnings():
    images, labels = make_data()
    images.flags.writeable = labels.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = loader(images, labels, augment="crop_flip")
        assert sum(len(y) for _, y in data) == 300


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"augment": "cutout"}, "augment"),
        ({"mean": (0.5,)}, "mean/std"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    images, labels = make_data(n=10)
    arguments = {"batch_size": 4, "mean": MEAN, "std": STD, **kwargs}
    with pytest.raises(ValueError, match=f"^{field}: "):
        DeviceLoader(images, labels, **arguments)


def test_crop_needs_images_larger_than_the_padding():
    with pytest.raises(ValueError, match="^augment: "):
        loader(*make_data(n=4, size=4), augment="crop_flip")
