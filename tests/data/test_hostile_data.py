"""Hostile dataset files of issue 23: sizes a file claims are checked against memory before they are
allocated, shared or cyclic lists in a pickle never blow up, --limit comes before the resize."""

import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from dcgan_features.core.errors import UserError
from dcgan_features.data import downsampled_imagenet as dsi
from dcgan_features.data import registry

from formats import write_cifar, write_cifar100, write_split


def _bomb_list(depth: int = 40):
    d = [1]
    for _ in range(depth):
        d = [d, d]  # 2**depth elements in a few hundred pickled bytes
    return d


@pytest.mark.parametrize("field", [b"labels", b"data"])
def test_cifar_pickle_with_shared_nested_list_one_line(tmp_path, field):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[field] = _bomb_list()
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="1099511627776 elements .lists shared inside the pickle"):
        registry.load("cifar10", "test", data_dir=tmp_path)


@pytest.mark.parametrize("dataset,field", [("cifar100", b"fine_labels"), ("cifar100-coarse", b"coarse_labels"),
                                           ("cifar100", b"data")])
def test_cifar100_pickle_with_shared_nested_list_one_line(tmp_path, dataset, field):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch[field] = _bomb_list()
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="1099511627776 elements .lists shared inside the pickle"):
        registry.load(dataset, "test", data_dir=tmp_path)


def test_pickle_list_that_contains_itself_one_line(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    loop = [1]
    loop.append(loop)
    batch[b"labels"] = loop
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="contains itself"):
        registry.load("cifar10", "test", data_dir=tmp_path)


def test_imagenet_pickle_labels_shared_nested_list_one_line(tmp_path):
    write_split(tmp_path, 32, "val", "pickle")
    path = tmp_path / dsi.release_folders(32, "val", "pickle")[0] / "val_data"
    batch = pickle.loads(path.read_bytes())
    batch["labels"] = _bomb_list()
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="lists shared inside the pickle"):
        registry.load("imagenet32", "val", data_dir=tmp_path)


def _npy_claiming(rows: int) -> bytes:
    """A .npy member whose header (as numpy's format documents it) claims ``rows`` x 3072 uint8,
    followed by one row of data."""
    header = ("{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 3072), }" % rows).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(3072)


def test_npz_header_claiming_more_rows_than_memory_one_line(tmp_path):
    write_split(tmp_path, 32, "val", "npz")
    path = tmp_path / dsi.release_folders(32, "val", "npz")[0] / "val_data.npz"
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["data.npy"] = _npy_claiming(10**12)  # 3 PB of images
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())
    with pytest.raises(UserError, match=r"the 1000000000000 images the .npz headers of imagenet32 claim need "
                                        r"2\.7 PiB of memory, more than the .* available here"):
        registry.load("imagenet32", "val", data_dir=tmp_path)


def test_limit_applies_before_the_resize(monkeypatch):
    """`--image-size 1024 --limit 10` must resize 10 images, not the split (it peaked at 11 GB)."""
    seen = []
    real = registry.to_rgb_size
    monkeypatch.setattr(registry, "to_rgb_size", lambda x, size, **kw: seen.append(x.shape[0]) or real(x, size))
    ds = registry.load("digits", "test", image_size=40, limit=10)
    assert seen == [10] and tuple(ds.images.shape) == (10, 3, 40, 40) and len(ds.labels) == 10


def test_resize_checked_against_memory(monkeypatch):
    import dcgan_features.core.memory as memory
    import torch

    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)
    with pytest.raises(UserError, match=r"10 images resized to 1024x1024 need 30\.0 MiB of memory, more than the "
                                        r"1\.0 MiB available here; use fewer images \(extract --limit N\)"):
        registry.to_rgb_size(torch.zeros((10, 1, 8, 8), dtype=torch.uint8), 1024)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG (chunks as the PNG specification lays them out) whose IHDR claims ``width`` x ``height``
    8-bit gray pixels and whose one IDAT holds a few bytes: a decompression bomb's header."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10000, 20000])  # PIL warns past 89 M pixels and refuses past twice that
def test_image_folder_decompression_bomb_one_line(tmp_path, side):
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    _png_header_only(folder / "bomb.png", side, side)
    with pytest.raises(UserError, match=f"bomb.png claims {side}x{side} pixels, more than the 89478485 an image "
                                        "may have"):
        registry.load("folder", "train", data_dir=tmp_path / "imgs", image_size=32)


# ------------------------------------------------------------------ datasets --verify reads what a load reads

def _rewrite_npz(path, **members):
    import zipfile as zf

    with zf.ZipFile(path) as z:
        old = {n: z.read(n) for n in z.namelist()}
    old.update({f"{k}.npy": v for k, v in members.items()})
    buf = io.BytesIO()
    with zf.ZipFile(buf, "w") as z:
        for n, b in old.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())


def test_verify_reads_every_pixel_of_an_npz(tmp_path):
    """A data member cut short (its header still says 5 rows, its zip entry is whole): the headers
    alone passed `datasets --verify`; every byte is now read, as a load reads it."""
    write_split(tmp_path, 32, "val", "npz")
    path = tmp_path / dsi.release_folders(32, "val", "npz")[0] / "val_data.npz"
    with zipfile.ZipFile(path) as z:
        data = z.read("data.npy")
    _rewrite_npz(path, data=data[:len(data) - 3072])
    spec = registry.get_dataset("imagenet32")
    with pytest.raises(UserError, match="'data' is truncated or corrupt"):
        list(spec.verify(tmp_path, "val"))
    with pytest.raises(UserError, match="'data' is truncated or corrupt"):
        registry.load("imagenet32", "val", data_dir=tmp_path)


def test_fortran_order_npz_verifies_and_loads_the_same_pixels(tmp_path):
    images, labels = write_split(tmp_path, 32, "val", "npz")
    path = tmp_path / dsi.release_folders(32, "val", "npz")[0] / "val_data.npz"
    z = dict(np.load(path))
    np.savez(path, data=np.asfortranarray(z["data"]), labels=z["labels"], mean=z["mean"])
    assert np.load(path)["data"].flags.f_contiguous
    spec = registry.get_dataset("imagenet32")
    assert "5 images in 1 npz batches" in list(spec.verify(tmp_path, "val"))[-1]
    ds = registry.load("imagenet32", "val", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.images.numpy(), images.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.labels.numpy(), labels)


@pytest.mark.parametrize("keep", [0.999, 0.5, 0.02])
def test_verify_refuses_a_truncated_svhn_mat(tmp_path, keep):
    from formats import write_svhn

    write_svhn(tmp_path, "test", n=7)
    f = next(tmp_path.rglob("*.mat"))
    f.write_bytes(f.read_bytes()[:int(len(f.read_bytes()) * keep)])
    with pytest.raises(UserError, match="not a readable SVHN .mat file"):
        list(registry.get_dataset("svhn").verify(tmp_path, "test"))
