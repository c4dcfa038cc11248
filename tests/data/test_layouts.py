"""Layout oracles: each loader gives back the picture its format's documentation describes.

The files are written from an asymmetric picture (an "F" on a different gradient per channel)
by the format's own serialisation (tests/formats.py), element by element; a loader that
transposes, mirrors or swaps channels returns another picture and fails here.
"""

import numpy as np
import pytest

from dcgan_features.data import downsampled_imagenet as dsi
from dcgan_features.data.registry import IDX_LABELS_MAGIC, load
from formats import (imagenet_row, letter_picture, write_batch, write_cifar_pictures, write_idx, write_idx_pictures,
                     write_svhn_pictures)


def hwc(images) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


def test_cifar10_is_the_documented_planes(tmp_path):
    pics = [letter_picture(32, 32, v) for v in (0, 3)]
    write_cifar_pictures(tmp_path, pics, [2, 7])
    for split in ("train", "test"):
        ds = load("cifar10", split, data_dir=tmp_path)
        assert np.array_equal(hwc(ds.images[:2]), np.stack(pics)) and ds.labels[:2].tolist() == [2, 7]


def test_svhn_is_x_of_i(tmp_path):
    pics = [letter_picture(32, 32, v) for v in (0, 3)]
    write_svhn_pictures(tmp_path, "test", pics, [10, 3])
    ds = load("svhn", "test", data_dir=tmp_path)
    assert np.array_equal(hwc(ds.images), np.stack(pics)) and ds.labels.tolist() == [0, 3]


def test_idx_is_row_major(tmp_path):
    pics = [letter_picture(28, 28, v)[..., c] for v, c in ((0, 0), (2, 1))]  # two different gray pictures
    for prefix in ("train", "t10k"):
        write_idx_pictures(tmp_path / f"{prefix}-images-idx3-ubyte.gz", pics)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([4, 9]), IDX_LABELS_MAGIC)
    ds = load("fashion-mnist", "test", data_dir=tmp_path)
    assert all(np.array_equal(hwc(ds.images)[..., ch], np.stack(pics)) for ch in range(3))


@pytest.mark.parametrize("form", ["npz", "pickle"])
@pytest.mark.parametrize("size", [32, 64])
def test_downsampled_imagenet_is_the_scripts_r_g_b(tmp_path, form, size):
    pics = [letter_picture(size, size, v) for v in (0, 5)]
    folder = tmp_path / dsi.release_folders(size, "val", form)[0]
    write_batch(folder / dsi.batch_names("val", form)[0], np.stack([imagenet_row(p) for p in pics]),
                np.array([1, 1000]), form)
    ds = load(f"imagenet{size}", "val", data_dir=tmp_path)
    assert np.array_equal(hwc(ds.images), np.stack(pics)) and ds.labels.tolist() == [0, 999]


def test_the_picture_is_asymmetric():
    p = letter_picture(32, 32)
    for other in (p[::-1], p[:, ::-1], p.transpose(1, 0, 2), p[..., ::-1], p[..., [1, 0, 2]]):
        assert not np.array_equal(p, other)
