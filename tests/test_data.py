"""Dataset loading: digits offline, synthetic shapes, and CIFAR/SVHN from files in their real on-disk formats."""

import hashlib
import pickle

import numpy as np
import pytest
from torchvision import datasets

from wrn_search.training.data import Split, dataset_info, load_dataset


def rows(*splits: Split) -> list[bytes]:
    """Every (image, label) pair, sorted: equal lists mean the same images, duplicates included."""
    return sorted(s.images[i].tobytes() + bytes([s.labels[i]]) for s in splits for i in range(len(s)))


def check_split(split: Split, shape: tuple[int, int, int]) -> None:
    assert split.images.dtype == np.uint8 and split.images.flags.c_contiguous
    assert split.images.shape[1:] == shape
    assert split.labels.dtype == np.int64 and split.labels.shape == (len(split.images),)


def test_digits_read_from_the_bundled_file_equal_scikit_learns_loader(monkeypatch):
    from sklearn.datasets import load_digits

    from wrn_search.training import data

    reference = load_digits()
    pixels, labels = data._read_digits()
    assert np.array_equal(pixels, reference.images) and np.array_equal(labels, reference.target)
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)  # a scikit-learn that moved the file
    pixels, labels = data._read_digits()
    assert np.array_equal(pixels, reference.images) and np.array_equal(labels, reference.target)


def test_digits_splits(digits):
    info = digits.info
    assert (info.name, info.num_classes, info.in_channels, info.input_size) == ("digits", 10, 1, (8, 8))
    for split in (digits.train, digits.val, digits.test):
        check_split(split, (1, 8, 8))
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.val) == round(0.1 * (len(digits.train) + len(digits.val)))
    assert digits.train.images.max() == 255 and set(np.unique(digits.train.labels)) == set(range(10))
    # The stored normalisation matches the data.
    assert abs(digits.train.images.mean() / 255 - info.mean[0]) < 0.01
    assert abs(digits.train.images.std() / 255 - info.std[0]) < 0.01


def test_split_is_seeded_and_the_test_set_fixed(digits):
    again, other = load_dataset("digits"), load_dataset("digits", seed=1)
    assert np.array_equal(again.val.images, digits.val.images)
    assert not np.array_equal(other.val.labels, digits.val.labels)
    assert np.array_equal(other.test.images, digits.test.images)
    # Train and val partition the same pool under either seed.
    assert rows(other.train, other.val) == rows(digits.train, digits.val)


def test_merged_and_no_validation(digits):
    merged = digits.merged()
    assert len(merged.train) == len(digits.train) + len(digits.val) and len(merged.val) == 0
    assert merged.val.images.shape[1:] == (1, 8, 8)
    none = load_dataset("digits", val_fraction=0)
    assert len(none.val) == 0 and len(none.train) == len(merged.train)


def test_synthetic_shapes():
    data = load_dataset("synthetic", train_size=50, test_size=7, num_classes=4, in_channels=2, input_size=12)
    assert data.info.in_channels == 2 and data.info.input_size == (12, 12) and len(data.info.mean) == 2
    check_split(data.train, (2, 12, 12))
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 7)
    assert data.train.labels.max() < 4
    assert dataset_info("synthetic").in_channels == 3  # the registry entry is untouched


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"name": "imagenet"}, "dataset"),
        ({"name": "digits", "val_fraction": 1.0}, "val_fraction"),
        ({"name": "digits", "val_fraction": -0.1}, "val_fraction"),
        ({"name": "digits", "seed": -1}, "seed"),
        ({"name": "digits", "extra": True}, "extra"),
        ({"name": "synthetic", "input_size": 0}, "input_size"),
        ({"name": "synthetic", "colour": 1}, "colour"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        load_dataset(**kwargs)


def test_split_rejects_wrong_layout():
    with pytest.raises(ValueError, match="^images: "):
        Split(np.zeros((2, 8, 8, 1), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="^labels: "):
        Split(np.zeros((2, 1, 8, 8), np.uint8), np.zeros(3, np.int64))


# -- torchvision datasets from small files in the real formats -----------------------------------


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(root, cls, per_file: int, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pickled batches as in the CIFAR python tarballs: rows of 3072 bytes (R, G, B planes), labels."""
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if cls is datasets.CIFAR10 else "fine_labels"
    classes = 10 if cls is datasets.CIFAR10 else 100
    written = {}
    for file_name, _ in cls.train_list + cls.test_list:
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, per_file).tolist()
        with open(folder / file_name, "wb") as file:
            pickle.dump({"data": data, label_key: labels}, file)
        written[file_name] = data.reshape(-1, 3, 32, 32), np.array(labels)
    with open(folder / cls.meta["filename"], "wb") as file:
        pickle.dump({cls.meta["key"]: [f"class{i}" for i in range(classes)]}, file)
    return written


def register_md5s(monkeypatch, root, cls) -> None:
    """torchvision checks every file's md5: tell it the md5s of the files this test wrote."""
    folder = root / cls.base_folder
    monkeypatch.setattr(cls, "train_list", [[name, md5(folder / name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5(folder / name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


@pytest.mark.parametrize("name,cls", [("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)])
def test_cifar_from_files(tmp_path, monkeypatch, name, cls):
    written = write_cifar(tmp_path, cls, 6, np.random.default_rng(0))
    register_md5s(monkeypatch, tmp_path, cls)
    data = load_dataset(name, root=tmp_path, val_fraction=0.2)
    check_split(data.train, (3, 32, 32))
    n_train = 6 * len(cls.train_list)
    assert (len(data.train), len(data.val), len(data.test)) == (n_train - round(0.2 * n_train), round(0.2 * n_train), 6)
    test_images, test_labels = written[cls.test_list[0][0]]
    assert np.array_equal(data.test.images, test_images) and np.array_equal(data.test.labels, test_labels)
    all_train = Split(np.concatenate([written[name][0] for name, _ in cls.train_list]),
                      np.concatenate([written[name][1] for name, _ in cls.train_list]))
    assert rows(data.train, data.val) == rows(all_train)


def test_cifar_with_wrong_checksums_is_a_clear_error(tmp_path):
    write_cifar(tmp_path, datasets.CIFAR10, 2, np.random.default_rng(0))  # md5s differ from the real files
    with pytest.raises(FileNotFoundError, match="missing or corrupt.*cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_missing_files_say_where_to_put_them(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=f"^dataset: {name} files are missing.*{tmp_path}.*download=True"):
        load_dataset(name, root=tmp_path)


def test_svhn_from_mat_files(tmp_path, monkeypatch):
    savemat = pytest.importorskip("scipy.io").savemat
    rng = np.random.default_rng(0)
    folder = tmp_path / "svhn"
    folder.mkdir()
    written = {}
    split_list = {}
    for part, count in (("train", 10), ("test", 4), ("extra", 5)):
        url, file_name, _ = datasets.SVHN.split_list[part]
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        digits = rng.integers(0, 10, count)
        digits[0] = 0
        # The .mat layout: X is [H, W, C, N], y is [N, 1] with the digit 0 stored as 10.
        savemat(folder / file_name, {"X": images.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10, digits)[:, None]})
        written[part] = images, digits
        split_list[part] = [url, file_name, md5(folder / file_name)]
    monkeypatch.setattr(datasets.SVHN, "split_list", split_list)
    data = load_dataset("svhn", root=tmp_path, val_fraction=0.2)
    check_split(data.test, (3, 32, 32))
    assert np.array_equal(data.test.images, written["test"][0]) and np.array_equal(data.test.labels, written["test"][1])
    assert (len(data.train), len(data.val)) == (8, 2)
    with_extra = load_dataset("svhn", root=tmp_path, extra=True, val_fraction=0.2)
    assert len(with_extra.train) + len(with_extra.val) == 15
