"""Loaders against tiny files written in the exact real on-disk formats."""

import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from dcgan_features.data.registry import (DEBIAN_FASHION_MNIST, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, describe, get_dataset,
                                 load, make_synthetic, to_rgb_size)
from dcgan_features.core.errors import DatasetError
from formats import rng, write_cifar, write_svhn, write_idx, write_fashion


# ------------------------------------------------------------------ format writers



def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dcgan_features.cli", *args], capture_output=True, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


# ---------------------------------------------------------------------- loaders


def test_cifar10_pickles_round_trip(tmp_path):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path)
    tr = load("cifar10", "train", data_dir=tmp_path)
    te = load("cifar10", "test", data_dir=tmp_path)
    assert tr.images.dtype == torch.uint8 and tr.labels.dtype == torch.int64
    assert np.array_equal(tr.images.numpy(), train_x) and np.array_equal(tr.labels.numpy(), train_y)
    assert np.array_equal(te.images.numpy(), test_x) and np.array_equal(te.labels.numpy(), test_y)
    assert tr.classes[:2] == ["airplane", "automobile"] and len(tr.classes) == 10
    # pointing --data-dir at the batches folder itself works too
    assert len(load("cifar10", "test", data_dir=tmp_path / "cifar-10-batches-py")) == len(test_y)


def test_svhn_mat_hwcn_and_label_10_is_0(tmp_path):
    X, y = write_svhn(tmp_path, "train")
    ds = load("svhn", "train", data_dir=tmp_path)
    assert ds.images.shape == (7, 3, 32, 32)
    for i in range(7):  # HWCN -> NCHW, pixel for pixel
        assert np.array_equal(ds.images[i].numpy(), X[:, :, :, i].transpose(2, 0, 1))
    expected = y.reshape(-1).astype(np.int64) % 10
    assert ds.labels[0] == 0 and np.array_equal(ds.labels.numpy(), expected)


@pytest.mark.parametrize("layout", ["", "FashionMNIST/raw"])
def test_fashion_mnist_idx_gz_both_layouts(tmp_path, layout):
    written = write_fashion(tmp_path / layout if layout else tmp_path)
    tr = load("fashion-mnist", "train", data_dir=tmp_path)
    images, labels = written["train"]
    assert tr.images.shape == (6, 3, 28, 28)  # grayscale -> 3 identical channels
    for c in range(3):
        assert np.array_equal(tr.images[:, c].numpy(), images)
    assert np.array_equal(tr.labels.numpy(), labels)
    te = load("fashion-mnist", "test", data_dir=tmp_path, image_size=32)
    assert te.images.shape == (3, 3, 32, 32)


def test_resize_is_antialiased_bilinear_once():
    const = torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)
    out = to_rgb_size(const, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8 and torch.all(out == 77)
    ramp = torch.arange(64, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(1, 3, 1, 1)
    assert torch.equal(to_rgb_size(ramp, None), ramp)
    small = to_rgb_size(ramp, 4)
    assert torch.all(small[:, :, :, 1:] >= small[:, :, :, :-1])  # order preserved


def test_digits_embedded_split():
    tr, te = load("digits", "train"), load("digits", "test", image_size=32)
    assert (len(tr), len(te)) == (1297, 500)
    assert te.images.shape == (500, 3, 32, 32)
    counts = te.labels.bincount()
    assert counts.min() >= 48 and counts.max() <= 52  # stratified
    assert tr.images.max() == 255 and tr.images.min() == 0
    assert torch.equal(load("digits", "train").images, tr.images)  # fixed, seeded


def test_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (40, 30), colour).save(tmp_path / cls / f"{i}.png")
    ds = load("folder", "train", data_dir=tmp_path, image_size=16)  # one of each class is drawn into test
    assert ds.images.shape == (2, 3, 16, 16)
    assert ds.labels.tolist() == [0, 1] and ds.classes == ["cats", "dogs"]
    assert ds.images[0, 0].float().mean() == 255 and ds.images[1, 2].float().mean() == 255


def test_synthetic_is_deterministic_and_labelled():
    a, ya = make_synthetic(50, 16, 5, seed=3)
    b, yb = make_synthetic(50, 16, 5, seed=3)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and set(ya) == set(range(5))
    assert len(load("synthetic", "test")) == 200


def test_describe_reports_presence_and_sizes(tmp_path):
    write_svhn(tmp_path, "test", n=5)
    rows = {r["name"]: r for r in describe(tmp_path)}
    assert rows["svhn"]["splits"] == {"train": "missing", "test": 5, "extra": "missing"}
    assert rows["svhn"]["present"] is False
    assert rows["digits"]["present"] is True and rows["digits"]["splits"] == {"train": 1297, "test": 500}


# -------------------------------------------------------------------- bad input


def test_missing_folder_names_files_and_fix(tmp_path):
    with pytest.raises(DatasetError) as e:
        load("cifar10", "train", data_dir=tmp_path / "nowhere")
    msg = str(e.value)
    assert "data_batch_1" in msg and "--data-dir" in msg and "--download" in msg and "\n" not in msg
    assert_one_line_error(cli("datasets", "--verify", "svhn", "--data-dir", str(tmp_path)),
                          "train_32x32.mat", "--download", "--data-dir")


def test_truncated_cifar_batch(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="not a readable CIFAR-10 batch"):
        load("cifar10", "test", data_dir=tmp_path)


def test_truncated_and_corrupt_idx(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])  # cut the gzip stream
    assert_one_line_error(cli("datasets", "--verify", "fashion-mnist", "--data-dir", str(tmp_path)), "truncated or corrupt")
    with gzip.open(path, "wb") as f:  # valid gzip, body shorter than the header says
        f.write(struct.pack(">IIII", IDX_IMAGES_MAGIC, 6, 28, 28) + b"\0" * 100)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load("fashion-mnist", "train", data_dir=tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="gzip"):
        load("fashion-mnist", "train", data_dir=tmp_path)


def test_wrong_idx_magic(tmp_path):
    write_fashion(tmp_path)
    # a labels file where the images file should be
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(3, np.uint8), IDX_LABELS_MAGIC)
    assert_one_line_error(cli("datasets", "--verify", "fashion-mnist", "--data-dir", str(tmp_path)),
                          "wrong idx magic number 2049, expected 2051")


def test_mat_without_x_y_and_corrupt_mat(tmp_path):
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match="has no 'X' and 'y' arrays"):
        load("svhn", "test", data_dir=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(DatasetError, match="not a readable SVHN .mat"):
        load("svhn", "test", data_dir=tmp_path)


def test_svhn_pixels_must_be_uint8_and_labels_1_to_10(tmp_path):
    X = rng.integers(0, 256, (32, 32, 3, 4)).astype(np.float64) * 1.5  # up to 382: a uint8 cast wraps
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X, "y": np.ones((4, 1))})
    with pytest.raises(DatasetError, match="X holds float64 pixels, SVHN's are uint8"):
        load("svhn", "test", data_dir=tmp_path)
    for y in (np.full((4, 1), 11), np.full((4, 1), 2.5), np.zeros((4, 1))):
        scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X.astype(np.uint8), "y": y})
        with pytest.raises(DatasetError, match="y must hold the digit classes 1..10"):
            load("svhn", "test", data_dir=tmp_path)


def test_unknown_dataset_and_split():
    with pytest.raises(DatasetError, match="available: cifar10, svhn, fashion-mnist"):
        get_dataset("emnist")
    with pytest.raises(DatasetError, match="no split 'extra'"):
        load("digits", "extra")


# --------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    tr = load("fashion-mnist", "train", data_dir=DEBIAN_FASHION_MNIST)
    te = load("fashion-mnist", "test", data_dir=DEBIAN_FASHION_MNIST)
    assert tr.images.shape == (60000, 3, 28, 28) and len(te) == 10000
    assert tr.labels.bincount().tolist() == [6000] * 10
    assert tr.classes[0] == "T-shirt/top"


# --------------------------------------------------------------------- registry


def test_a_new_dataset_is_one_registry_entry(tmp_path, monkeypatch):
    """load, describe and --download know a dataset only through its DatasetSpec."""
    from dcgan_features.data import registry as data

    def reader(root, split):
        x = np.load(root / f"{split}.npy")
        return x, np.arange(len(x)) % 2

    fetched = []

    def fetch(root):
        fetched.append(root)
        (tmp_path / "toy").mkdir(exist_ok=True)
        np.save(tmp_path / "toy" / "train.npy", np.zeros((6, 1, 8, 8), np.uint8))

    spec = data.DatasetSpec("toy", "a toy format", {"train": 6}, {"train": ("train.npy",)}, ("toy",), reader,
                            fetch=fetch, install_hint=" (or: make toy)", header_count=lambda root, split: 6,
                            class_names=lambda root: ["even", "odd"])
    monkeypatch.setitem(data.DATASETS, "toy", spec)
    with pytest.raises(data.DatasetError, match=r"`dcgan-features datasets --verify toy --download --data-dir DIR` \(or: make toy\)"):
        data.load("toy", "train", data_dir=tmp_path)
    assert [r for r in data.describe(tmp_path) if r["name"] == "toy"][0]["present"] is False
    ds = data.load("toy", "train", data_dir=tmp_path, download_missing=True, image_size=16)
    assert fetched == [str(tmp_path)] and ds.images.shape == (6, 3, 16, 16) and ds.classes == ["even", "odd"]
    row = [r for r in data.describe(tmp_path) if r["name"] == "toy"][0]
    assert row["present"] is True and row["splits"] == {"train": 6}
