"""MNIST, CIFAR-100 and STL-10 read from tiny files written from each release's own documentation."""

import numpy as np
import pytest

from dcgan_features.core.errors import DatasetError
from dcgan_features.data.registry import describe, load
from formats import write_cifar100, write_mnist, write_stl10


def test_mnist_reads_its_idx_files(tmp_path):
    written = write_mnist(tmp_path / "mnist", n_train=5, n_test=4)
    tr = load("mnist", "train", data_dir=tmp_path)
    assert tr.images.shape == (5, 3, 28, 28) and tr.classes == [str(i) for i in range(10)]
    assert np.array_equal(tr.images[:, 0].numpy(), written["train"][0])
    assert tr.labels.tolist() == written["train"][1].tolist()
    assert len(load("mnist", "test", data_dir=tmp_path)) == 4


@pytest.mark.parametrize("name,column", [("cifar100", 1), ("cifar100-coarse", 2)])
def test_cifar100_fine_and_coarse_labels(tmp_path, name, column):
    written = write_cifar100(tmp_path)
    for split in ("train", "test"):
        ds = load(name, split, data_dir=tmp_path)
        assert np.array_equal(ds.images.numpy(), written[split][0])
        assert ds.labels.tolist() == written[split][column].tolist()
    assert ds.classes[0] == ("fine0" if column == 1 else "coarse0") and len(ds.classes) == (100 if column == 1 else 20)


def test_stl10_binary_is_column_major_with_labels_1_to_10(tmp_path):
    written = write_stl10(tmp_path)
    tr = load("stl10", "train", data_dir=tmp_path)
    x, y = written["train"]
    assert tr.images.shape == (30, 3, 96, 96) and np.array_equal(tr.images.numpy(), x)
    assert (tr.images[:, :, 0, 1:] == 255).all() and (tr.images[:, :, 1:, 0] == 0).all()  # not transposed
    assert tr.labels.tolist() == y.tolist() and tr.labels.min() == 0 and tr.labels.max() == 9
    assert tr.classes[0] == "airplane" and np.array_equal(tr.info["folds"], written["folds"])
    un = load("stl10", "unlabeled", data_dir=tmp_path, image_size=32)
    assert un.images.shape == (4, 3, 32, 32) and (un.labels == -1).all()
    assert {r["name"]: r for r in describe(tmp_path)}["stl10"]["splits"] == {"train": 30, "test": 20, "unlabeled": 4}


def test_stl10_refuses_a_truncated_bin_naming_it(tmp_path):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"test_X.bin holds \d+ bytes, not a whole number of 27648-byte"):
        load("stl10", "test", data_dir=tmp_path)


def test_stl10_refuses_labels_outside_1_to_10_and_bad_folds(tmp_path):
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "test_y.bin").write_bytes(bytes([0] * 20))
    with pytest.raises(DatasetError, match=r"test_y.bin: labels must be 1..10, found 0..0"):
        load("stl10", "test", data_dir=tmp_path)
    (tmp_path / "stl10_binary" / "fold_indices.txt").write_text("1 2 3\n" * 9)
    with pytest.raises(DatasetError, match=r"fold_indices.txt: expected 10 lines"):
        load("stl10", "train", data_dir=tmp_path)
    (tmp_path / "stl10_binary" / "fold_indices.txt").write_text("1 2 30\n" * 10)
    with pytest.raises(DatasetError, match=r"row numbers must be 0..29"):
        load("stl10", "train", data_dir=tmp_path)
