"""The embedded MNIST-5k split."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from spikezip.data import DatasetNotFoundError, build_datasets, load_mnist5k


def test_mnist5k_split_is_fixed_balanced_and_normalised():
    train, test = load_mnist5k(seed=0)
    assert len(train) == 4000 and len(test) == 1000
    x, y = test.tensors
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(train.tensors[0].mean())) < 0.1  # normalised with MNIST's mean / std
    assert set(torch.bincount(y).tolist()) != {100}  # a random split, not a stratified copy
    assert torch.bincount(torch.cat([train.tensors[1], y])).tolist() == [500] * 10
    again, _ = load_mnist5k(seed=0)
    assert torch.equal(again.tensors[1], train.tensors[1])
    other, _ = load_mnist5k(seed=1)
    assert not torch.equal(other.tensors[1], train.tensors[1])


def test_bad_test_size():
    with pytest.raises(ValueError, match="test_size"):
        load_mnist5k(test_size=5000)


# ------------------------------------------------ the datasets by name ----


def test_digits():
    train, val, info = build_datasets("digits")
    assert (len(train), len(val)) == (1438, 359)
    assert info.num_classes == 10 and info.image_size == 8
    assert float(train.tensors[0].max()) == 1.0


def _write_cifar(root, name, n=6):
    """Tiny files in torchvision's real CIFAR on-disk format (pickled dicts)."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, train_files, test_files, key = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "labels",
        )
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    else:
        folder, train_files, test_files, key = (
            "cifar-100-python",
            ["train"],
            ["test"],
            "fine_labels",
        )
        meta = ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    base = root / folder
    base.mkdir(parents=True)
    for file in train_files + test_files:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(range(n))}
        (base / file).write_bytes(pickle.dumps(entry))
    (base / meta[0]).write_bytes(pickle.dumps(meta[1]))


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loads_the_real_on_disk_format(tmp_path, monkeypatch, name, classes):
    import torchvision.datasets.cifar as cifar

    _write_cifar(tmp_path, name)
    # The tiny files cannot match the real archives' md5 sums; everything else is real.
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    train, val, info = build_datasets(name, root=tmp_path)
    assert info.num_classes == classes and info.in_channels == 3
    assert len(train) == (30 if name == "cifar10" else 6) and len(val) == 6
    x, y = train[2]
    assert x.shape == (3, 32, 32) and y == 2
    assert abs(float(x.mean())) < 2  # normalised


def test_missing_cifar_says_where_and_how(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"cifar10 not found .*cifar-10-batches-py.*data.download=true"
    ):
        build_datasets("cifar10", root=tmp_path)


def test_imagenet_folder(tmp_path):
    for split in ("train", "val"):
        for cls in ("n01", "n02", "n03"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.JPEG")
    train, val, info = build_datasets("imagenet", root=tmp_path)
    assert info.num_classes == 3 and len(train) == 6 and len(val) == 6
    x, y = val[5]
    assert x.shape == (3, 224, 224) and y == 2


def test_imagenet_splits_with_different_classes_are_refused(tmp_path):
    for split, classes in (("train", ("a", "b", "c")), ("val", ("a", "c"))):
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "x.png")
    with pytest.raises(DatasetNotFoundError, match=r"different class folders \(e.g. \['b'\]\)"):
        build_datasets("imagenet", root=tmp_path)


def test_missing_imagenet_says_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"split 'train' not found.*ImageFolder"):
        build_datasets("imagenet", root=tmp_path / "nowhere")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar1000'"):
        build_datasets("cifar1000")


# ------------------------------------------------ Fashion-MNIST ----


def _write_idx(folder, n_train=12, n_test=5, gz=True):
    """Tiny files in the real idx format (big-endian magic, sizes, then uint8 data), named
    as the dataset's four files; gzipped like the originals unless ``gz`` is False."""
    import gzip
    import struct

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        files = {
            f"{split}-images-idx3-ubyte": struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes(),
            f"{split}-labels-idx1-ubyte": struct.pack(">ii", 2049, n) + labels.tobytes(),
        }
        for name, payload in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return folder


def test_fashion_mnist_comes_from_the_system_package_when_root_lacks_it(tmp_path, monkeypatch):
    import spikezip.data.classification as datasets

    system = _write_idx(tmp_path / "usr-share")
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM", system)
    train, val, info = build_datasets("fashion_mnist", root=tmp_path / "data", augment=False)
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 28)
    assert (len(train), len(val)) == (12, 5)
    x, y = train[3]
    assert x.shape == (1, 28, 28) and y == 3
    raw = np.frombuffer(
        (tmp_path / "data/FashionMNIST/raw/train-images-idx3-ubyte").read_bytes()[16:], np.uint8
    )
    expected = (raw.reshape(12, 28, 28)[3] / 255.0 - 0.2860) / 0.3530
    assert torch.allclose(x[0], torch.as_tensor(expected, dtype=torch.float32), atol=1e-6)
    # Extracted once into data.root, as a download would be; the next load reads it there.
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM", tmp_path / "gone")
    again, _, _ = build_datasets("fashion_mnist", root=tmp_path / "data", augment=False)
    assert torch.equal(again[3][0], x)


def test_fashion_mnist_in_root_is_read_as_torchvision_lays_it_out(tmp_path):
    _write_idx(tmp_path / "FashionMNIST" / "raw", n_train=20, gz=False)
    train, val, _ = build_datasets("fashion_mnist", root=tmp_path)
    assert len(train) == 20 and train[0][0].shape == (1, 28, 28)


def test_seeded_subsets_of_any_dataset():
    train, val, _ = build_datasets("digits", train_size=100, val_size=50, seed=3)
    assert (len(train), len(val)) == (100, 50)
    again, _, _ = build_datasets("digits", train_size=100, val_size=50, seed=3)
    other, _, _ = build_datasets("digits", train_size=100, val_size=50, seed=4)
    assert train.indices == again.indices != other.indices
    assert train.indices == sorted(train.indices)  # the stored order, for calibration
    whole, _, _ = build_datasets("digits", train_size=10_000)
    assert len(whole) == 1438


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    import spikezip.data.classification as datasets

    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as err:
        build_datasets("fashion_mnist", root=tmp_path / "data")
    message = str(err.value)
    for needed in ("FashionMNIST/raw", "nowhere", "make fashion-mnist", "data.download=true"):
        assert needed in message


def test_a_truncated_fashion_mnist_file_is_named(tmp_path):
    raw = _write_idx(tmp_path / "FashionMNIST" / "raw", gz=False)
    data = raw / "train-images-idx3-ubyte"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(DatasetNotFoundError, match="cannot be read"):
        build_datasets("fashion_mnist", root=tmp_path)
