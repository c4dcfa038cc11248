"""Downsampled ImageNet against tiny files written in both released forms (npz and pickle)."""

import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dcgan_features.data import downsampled_imagenet as dsi
from dcgan_features.cli import main
from dcgan_features.data.registry import describe, get_dataset, load
from dcgan_features.core.errors import DatasetError
from formats import BATCH_SIZES, PROTOCOL, write_batch, write_split


def planar(data: np.ndarray, size: int) -> np.ndarray:
    """The reference reading, pixel by pixel: value (c, y, x) is at c*S*S + y*S + x."""
    n = len(data)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for c in range(3):
        for y in range(size):
            out[:, c, y, :] = data[:, c * size * size + y * size: c * size * size + (y + 1) * size]
    return out


@pytest.mark.parametrize("form", ["npz", "pickle"])
@pytest.mark.parametrize("flat", [False, True])
def test_imagenet32_both_forms_pixel_exact_zero_based(tmp_path, form, flat):
    data, labels = write_split(tmp_path, 32, "train", form, flat=flat)
    val_data, val_labels = write_split(tmp_path, 32, "val", form, seed=1, flat=flat)
    tr = load("imagenet32", "train", data_dir=tmp_path)
    va = load("imagenet32", "val", data_dir=tmp_path)
    assert tr.images.shape == (sum(BATCH_SIZES), 3, 32, 32) and tr.images.dtype.is_floating_point is False
    assert np.array_equal(tr.images.numpy(), planar(data, 32))
    assert np.array_equal(va.images.numpy(), planar(val_data, 32))
    assert tr.labels.tolist() == labels.tolist() and va.labels.tolist() == val_labels.tolist()
    assert tr.labels.min() == 0 and tr.labels.max() == 999
    assert tr.images[0, 0, 0, 1] == data[0, 1] and tr.images[0, 1, 0, 0] == data[0, 1024]  # planar: G after R


def test_imagenet64_two_part_archives_and_imagenet_subfolder(tmp_path):
    data, labels = write_split(tmp_path / "imagenet64", 64, "train", "npz")
    write_split(tmp_path / "imagenet64", 64, "val", "npz")
    ds = load("imagenet64", "train", data_dir=tmp_path)
    assert np.array_equal(ds.images.numpy(), planar(data, 64)) and ds.labels.tolist() == labels.tolist()
    assert load("imagenet64", "train", data_dir=tmp_path, image_size=32).images.shape == (len(data), 3, 32, 32)


def test_describe_counts_and_verify_every_batch(tmp_path):
    write_split(tmp_path, 32, "train", "npz")
    write_split(tmp_path, 32, "val", "pickle")
    row = next(r for r in describe(tmp_path) if r["name"] == "imagenet32")
    assert row["present"] and row["splits"] == {"train": sum(BATCH_SIZES), "val": 5}
    lines = list(get_dataset("imagenet32").verify(tmp_path, "train"))
    assert len(lines) == 11 and "train_data_batch_10.npz: 2 images 3x32x32 uint8" in lines[9]
    assert lines[-1].startswith(f"imagenet32 train: {sum(BATCH_SIZES)} images in 10 npz batches (expected 1281167)")
    assert "labels 0..999" in lines[-1]


def _error(tmp_path, name="imagenet32", split="train") -> str:
    with pytest.raises(DatasetError) as e:
        load(name, split, data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("form", ["npz", "pickle"])
def test_missing_batch_file_is_named(tmp_path, form):
    write_split(tmp_path, 32, "train", form)
    name = dsi.batch_names("train", form)[6]
    (tmp_path / dsi.release_folders(32, "train", form)[0] / name).unlink()
    msg = _error(tmp_path)
    assert f"batch file {name!r} is missing (9 of 10 {form} batches found)" in msg and "--data-dir" in msg
    assert "image-net.org" in _error(tmp_path / "empty")


@pytest.mark.parametrize("form", ["npz", "pickle"])
@pytest.mark.parametrize("fields, expected", [
    ({"images": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, "no 'data' key (found: images, labels)"),
    ({"data": np.zeros((2, 3, 32, 32), np.uint8), "labels": [1, 2]}, "'data' has shape (2, 3, 32, 32), expected (N, 3072)"),
    ({"data": np.zeros((2, 3072), np.float32), "labels": [1, 2]}, "'data' has dtype float32, expected uint8"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 999]}, "labels range 0..999, expected 1..1000"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 1001]}, "labels range 1..1001, expected 1..1000"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, "'labels' must be 2 integers"),
    ({"data": np.zeros((2, 12288), np.uint8), "labels": [1, 2]}, "holds 64x64 images (12288 values per row)"),
])
def test_bad_batch_one_line_naming_file(tmp_path, form, fields, expected):
    write_split(tmp_path, 32, "train", form)
    path = tmp_path / dsi.release_folders(32, "train", form)[0] / dsi.batch_names("train", form)[3]
    if form == "npz":
        np.savez(path, **{k: np.asarray(v) for k, v in fields.items()})
    else:
        with open(path, "wb") as f:
            pickle.dump(fields, f, protocol=PROTOCOL)
    msg = _error(tmp_path)
    assert msg.startswith(str(path)) and expected in msg, msg


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickles_of_every_protocol_load(tmp_path, protocol):
    data = np.random.default_rng(3).integers(0, 256, (4, 3072), dtype=np.uint8)
    write_batch(tmp_path / "val_data", data, np.array([1, 2, 999, 1000]), "pickle", protocol=protocol)
    ds = load("imagenet32", "val", data_dir=tmp_path)
    assert np.array_equal(ds.images.numpy(), planar(data, 32)) and ds.labels.tolist() == [0, 1, 998, 999]


def test_truncated_npz_and_foreign_pickle(tmp_path):
    write_split(tmp_path, 32, "val", "npz")
    path = tmp_path / "Imagenet32_val_npz" / "val_data.npz"
    path.write_bytes(path.read_bytes()[:1000])
    assert "not a readable .npz batch" in _error(tmp_path, split="val")
    path.unlink()
    folder = tmp_path / "Imagenet32_val"
    folder.mkdir()
    (folder / "val_data").write_bytes(pickle.dumps(("data", [1]), protocol=2))
    assert "holds a tuple, not a dict" in _error(tmp_path, split="val")


def test_pickle_that_names_code_is_refused(tmp_path):
    folder = tmp_path / "Imagenet32_val"
    folder.mkdir()
    (folder / "val_data").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    msg = _error(tmp_path, split="val")
    assert msg.startswith(str(folder / "val_data")) and "refusing to unpickle os.system" in msg, msg


@pytest.mark.parametrize("form", ["npz", "pickle"])
def test_peak_allocation_is_one_batch_over_the_dataset(tmp_path, form, monkeypatch):
    """The deterministic proxy of the benchmark's RSS bound: the traced allocations while loading
    stay within 1.25x the final uint8 array (npz: streamed in chunks, so ~1x)."""
    monkeypatch.setattr(dsi, "CHUNK_BYTES", 1 << 16)  # the real 16 MiB is 4% of a real batch, 3x a tiny one
    data, _ = write_split(tmp_path, 64, "train", form, flat=True, sizes=[40] * 10)
    tracemalloc.start()
    try:
        images, _ = dsi.read(dsi.find(tmp_path, 64, "train"), 64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert images.nbytes == data.nbytes
    assert peak <= (1.06 if form == "npz" else 1.25) * data.nbytes, peak / data.nbytes


def test_cli_listing_verify_and_download_message(tmp_path, capsys):
    def run(*args):
        with pytest.raises(SystemExit) as e:
            main(["datasets", "--data-dir", str(tmp_path), *args])
        return (e.value.code, *capsys.readouterr())

    write_split(tmp_path, 32, "val", "npz")
    code, out, _ = run()
    assert code == 0 and "imagenet32     MISSING  train missing, val 5" in out
    code, out, err = run("--verify", "imagenet32", "--download")
    assert code != 0 and err.count("\n") == 1
    assert err.startswith("error: imagenet32 cannot be downloaded by this tool: it needs an image-net.org "
                          "account; download Imagenet32_train_npz and Imagenet32_val_npz"), err
    write_split(tmp_path, 32, "train", "pickle")
    code, out, err = run("--verify", "imagenet32")
    assert code == 0 and out.splitlines()[-1].startswith("imagenet32 val: 5 images in 1 npz batches"), out
