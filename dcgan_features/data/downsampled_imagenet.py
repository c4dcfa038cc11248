"""Downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017) in both released forms.

The 32x32 and 64x64 versions of ImageNet-1k are released by image-net.org (an account is
needed) as ten train batches and one validation batch, each in two forms:

    npz:     Imagenet32_train_npz/train_data_batch_1.npz .. _10.npz,  Imagenet32_val_npz/val_data.npz
    pickle:  Imagenet32_train/train_data_batch_1 .. _10,              Imagenet32_val/val_data

(Imagenet64's train batches come in two archives, ``Imagenet64_train_part1`` with batches
1-5 and ``_part2`` with 6-10; both folders are searched.) Every batch holds ``data``
(N, 3*S*S) uint8 in planar order (the whole R plane, then G, then B, each row-major, as
CIFAR-10), ``labels`` 1..1000 (a list or an array) and ``mean`` (ignored). Labels are
stored 0-based here.

Memory is the point of this module: the train split is 3.9 GB as uint8 (imagenet64:
15.7 GB), so the final (N, 3, S, S) array is allocated once and filled batch by batch.
The npz form has headers: their shapes size the array before any pixel is read, and the
pixels are streamed from the zip member straight into it. The pickle form has none: the
array is sized from the first batch and grown in place (``realloc``, which moves pages
rather than copying them) if later batches need more. Pickles are read through the
restricted unpickler :mod:`dcgan_features.data.safe_pickle`, which builds plain containers and
numpy arrays only, never code named by the file.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> x = np.arange(2 * 3 * 32 * 32, dtype=np.uint8).reshape(2, 3072)
>>> (root / "Imagenet32_val_npz").mkdir()
>>> np.savez(root / "Imagenet32_val_npz" / "val_data.npz", data=x, labels=np.array([1, 1000]))
>>> images, labels = read(find(root, 32, "val"), 32)
>>> images.shape, images.dtype, labels.tolist()
((2, 3, 32, 32), dtype('uint8'), [0, 999])
>>> bool((images[1, 0].ravel() == x[1, :1024]).all())  # the R plane comes first
True
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.errors import DatasetError
from ..core.memory import check_fits

SIZES = (32, 64)
SPLIT_SIZES = {"train": 1_281_167, "val": 50_000}
TRAIN_BATCHES = 10
NUM_CLASSES = 1000
FORMS = ("npz", "pickle")  # the order a split's form is looked for in
CHUNK_BYTES = 1 << 24  # streamed npz reads: 16 MiB at a time
DOWNLOAD_PAGE = "https://image-net.org/download-images.php"


def batch_names(split: str, form: str) -> list[str]:
    """File names of a split's batches in one form, in order.

    >>> batch_names("val", "npz"), batch_names("train", "pickle")[-1]
    (['val_data.npz'], 'train_data_batch_10')
    """
    stems = [f"train_data_batch_{i}" for i in range(1, TRAIN_BATCHES + 1)] if split == "train" else ["val_data"]
    return [s + ".npz" for s in stems] if form == "npz" else stems


def release_folders(size: int, split: str, form: str) -> list[str]:
    """The folders the released archives unpack into, for one split and form.

    >>> release_folders(64, "train", "npz")
    ['Imagenet64_train_npz', 'Imagenet64_train_part1_npz', 'Imagenet64_train_part2_npz']
    """
    tail = "_npz" if form == "npz" else ""
    names = [f"Imagenet{size}_{split}"]
    if size == 64 and split == "train":
        names += ["Imagenet64_train_part1", "Imagenet64_train_part2"]
    return [n + tail for n in names]


def search_dirs(base: Path, size: int, split: str, form: str) -> list[Path]:
    """Where a batch file is looked for: ``base``, ``base/imagenetS``, and the release folders in each."""
    dirs = []
    for top in (base, base / f"imagenet{size}"):
        dirs += [top] + [top / f for f in release_folders(size, split, form)]
    return dirs


@dataclass(frozen=True)
class Batches:
    """The files of one split in one form, every batch found."""

    form: str
    paths: tuple[Path, ...]


def _find_form(base: Path, size: int, split: str, form: str) -> tuple[list[Path], list[str]]:
    found, missing = [], []
    dirs = search_dirs(base, size, split, form)
    for name in batch_names(split, form):
        hit = next((d / name for d in dirs if (d / name).is_file()), None)
        (found if hit else missing).append(hit or name)
    return found, missing


def find(base: str | os.PathLike, size: int, split: str) -> Batches | None:
    """The first form (npz, then pickle) of which every batch of ``split`` is found under ``base``."""
    for form in FORMS:
        found, missing = _find_form(Path(base), size, split, form)
        if not missing:
            return Batches(form, tuple(found))
    return None


def download_message(size: int) -> str:
    """One line: these files cannot be fetched here, and which ones to get."""
    return (f"imagenet{size} cannot be downloaded by this tool: it needs an image-net.org account; "
            f"download Imagenet{size}_train_npz and Imagenet{size}_val_npz (or the pickle archives "
            f"Imagenet{size}_train, Imagenet{size}_val) from {DOWNLOAD_PAGE}, unzip them into one folder "
            f"and pass it as --data-dir")


def missing_message(base: str | os.PathLike, size: int, split: str) -> str:
    """One line for a split that is not complete: the first missing file of the form nearest to complete."""
    base = Path(base)
    results = {form: _find_form(base, size, split, form) for form in FORMS}
    form = max(FORMS, key=lambda f: len(results[f][0]))  # ties: npz
    found, missing = results[form]
    folder = release_folders(size, split, form)[0]
    names = batch_names(split, form)
    expected = f"{folder}/{names[0]}" + (f" .. {names[-1]}" if len(names) > 1 else "")
    what = (f"batch file {missing[0]!r} is missing ({len(found)} of {len(names)} {form} batches found)"
            if found else "split not found")
    return (f"imagenet{size} {split}: {what}: expected {expected} ({form} form; or the "
            f"{'pickle' if form == 'npz' else 'npz'} form) under {str(base)!r} or its {folder}/ folder; "
            f"{download_message(size).split(': ', 1)[1]}")


# ----------------------------------------------------------------------- one batch


def _row(size: int) -> int:
    return 3 * size * size


def _check_data(path: Path, shape: tuple, dtype: np.dtype, size: int) -> int:
    """Number of images in a batch whose ``data`` has this shape and dtype, or a one-line error."""
    if len(shape) == 2 and shape[1] != _row(size):
        other = next((s for s in SIZES if _row(s) == shape[1]), None)
        if other is not None:
            raise DatasetError(f"{path}: holds {other}x{other} images ({shape[1]} values per row) but "
                               f"imagenet{size} expects {size}x{size} ({_row(size)}): batches of two sizes "
                               f"are mixed; keep Imagenet{other} files out of the imagenet{size} folders or "
                               f"load them as --dataset imagenet{other}")
    if len(shape) != 2 or shape[1] != _row(size):
        raise DatasetError(f"{path}: 'data' has shape {tuple(shape)}, expected (N, {_row(size)}) "
                           f"(N images of 3x{size}x{size}, planar); the file is not a Downsampled ImageNet "
                           f"{size}x{size} batch: re-download it")
    if np.dtype(dtype) != np.uint8:
        raise DatasetError(f"{path}: 'data' has dtype {np.dtype(dtype)}, expected uint8; re-download the file")
    return int(shape[0])


def _check_labels(path: Path, labels: object, n: int) -> np.ndarray:
    """0-based int64 labels from the released 1..1000 ones, or a one-line error."""
    from .safe_pickle import plain_array

    try:
        y = plain_array(labels, None, f"{path}: 'labels'")
    except (TypeError, ValueError):
        y = np.asarray([], dtype=object)
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != n:
        raise DatasetError(f"{path}: 'labels' must be {n} integers (one per image), found "
                           f"{y.dtype} of shape {y.shape}; re-download the file")
    if n and (y.min() < 1 or y.max() > NUM_CLASSES):
        raise DatasetError(f"{path}: labels range {int(y.min())}..{int(y.max())}, expected 1..{NUM_CLASSES} "
                           "as released (already 0-based?); use the files as downloaded from image-net.org")
    return y.astype(np.int64) - 1


def _check_keys(path: Path, keys: set[str]) -> None:
    missing = [k for k in ("data", "labels") if k not in keys]
    if missing:
        raise DatasetError(f"{path}: no {' or '.join(repr(k) for k in missing)} key (found: "
                           f"{', '.join(sorted(keys)) or 'none'}); a Downsampled ImageNet batch holds "
                           "data, labels and mean: re-download the file")


class _NpzBatch:
    """One .npz batch: the shape of ``data`` from its header, pixels streamed into a buffer."""

    def __init__(self, path: Path, size: int):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            members = {n[:-4]: n for n in self.zip.namelist() if n.endswith(".npy")}
            _check_keys(path, set(members))
            self.member = members["data"]
            self.labels_member = members["labels"]
            with self.zip.open(self.member) as f:
                shape, self.fortran, dtype = _npy_header(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{path} is not a readable .npz batch ({type(e).__name__}: truncated or corrupt); "
                               "re-download it") from None
        self.n = _check_data(path, shape, dtype, size)

    def labels(self) -> np.ndarray:
        try:
            with self.zip.open(self.labels_member) as f:
                y = np.lib.format.read_array(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{self.path}: 'labels' is not a readable array ({type(e).__name__}); "
                               "re-download the file") from None
        return _check_labels(self.path, y, self.n)

    def fill(self, out: np.ndarray) -> None:
        """Copy the pixels into ``out`` (n, 3, S, S) uint8, C-contiguous, 16 MiB at a time."""
        try:
            with self.zip.open(self.member) as f:
                _npy_header(f)
                if self.fortran:  # not how the files are released; correct, at the cost of one batch copy
                    n, row = out.shape[0], out[0].size  # column-major (n, row): row runs of n bytes
                    raw = f.read(n * row)
                    if len(raw) != n * row:
                        raise EOFError
                    out.reshape(n, row)[...] = np.frombuffer(raw, np.uint8).reshape(row, n).T
                    return
                view = memoryview(out.reshape(-1))
                for start in range(0, len(view), CHUNK_BYTES):
                    stop = min(start + CHUNK_BYTES, len(view))
                    chunk = f.read(stop - start)
                    if len(chunk) != stop - start:
                        raise EOFError
                    view[start:stop] = chunk
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{self.path}: 'data' is truncated or corrupt ({type(e).__name__}); "
                               "re-download the file") from None

    def close(self) -> None:
        self.zip.close()


def _npy_header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _load_pickle(path: Path) -> dict:
    from . import safe_pickle
    from ..core.errors import UserError

    try:  # latin1: Python 2's str keys become str, its raw array bytes stay bytes
        obj = safe_pickle.load(path, encoding="latin1")
    except safe_pickle.ForbiddenPickleError as e:
        raise DatasetError(f"{e}; a Downsampled ImageNet batch is a plain dict: re-download the file") from None
    except UserError as e:  # truncated, corrupt, unreadable: the message names the file
        raise DatasetError(f"{e}; re-download the file") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: holds a {type(obj).__name__}, not a dict of data, labels and mean; "
                           "re-download the file")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _pickle_batch(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The checked (n, 3, S, S) pixels and 0-based labels of one pickled batch."""
    batch = _load_pickle(path)
    _check_keys(path, set(batch))
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DatasetError(f"{path}: 'data' is a {type(data).__name__}, expected a uint8 array; re-download the file")
    n = _check_data(path, data.shape, data.dtype, size)
    labels = _check_labels(path, batch["labels"], n)
    return data.reshape(n, 3, size, size), labels


# ---------------------------------------------------------------------- a split


def read(batches: Batches | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole split: uint8 (N, 3, S, S) images and int64 0-based labels, allocated once."""
    if batches is None:
        raise DatasetError(f"imagenet{size}: no batches found")
    if batches.form == "npz":
        return _read_npz(batches.paths, size)
    return _read_pickle(batches.paths, size)


def _read_npz(paths: tuple[Path, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    opened = []
    try:
        for p in paths:  # every header first: a bad batch fails before gigabytes are read
            opened.append(_NpzBatch(p, size))
        total = sum(b.n for b in opened)
        check_fits(total * (3 * size * size + 8), f"the {total} images the .npz headers of imagenet{size} claim",
                   "check the files (a header may be corrupt) or use a machine with more memory")
        images = np.empty((total, 3, size, size), dtype=np.uint8)
        labels = np.empty(total, dtype=np.int64)
        start = 0
        for b in opened:
            labels[start:start + b.n] = b.labels()
            b.fill(images[start:start + b.n])
            start += b.n
        return images, labels
    finally:
        for b in opened:
            b.close()


def _read_pickle(paths: tuple[Path, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    images = labels = None
    start = 0
    for i, p in enumerate(paths):
        data, y = _pickle_batch(p, size)
        n = len(y)
        if images is None:  # no header to size from: guess equal batches, correct in place below
            images = np.empty((n * len(paths), 3, size, size), dtype=np.uint8)
            labels = np.empty(n * len(paths), dtype=np.int64)
        if start + n > len(images):
            _resize(images, labels, start + n + (len(paths) - i - 1) * n)
        images[start:start + n] = data
        labels[start:start + n] = y
        start += n
        del data, y
    assert images is not None and labels is not None
    if start != len(images):
        _resize(images, labels, start)
    return images, labels


def _resize(images: np.ndarray, labels: np.ndarray, n: int) -> None:
    # ndarray.resize reallocates in place; for buffers this large glibc's realloc remaps
    # pages (mremap) instead of copying them, so growing or shrinking costs no second copy.
    images.resize((n,) + images.shape[1:], refcheck=False)
    labels.resize((n,), refcheck=False)


def count(batches: Batches, size: int) -> int:
    """Images in the split: from the headers (npz), or by reading each batch once (pickle)."""
    return sum(b.n for b in iter_check(batches, size))


@dataclass(frozen=True)
class BatchReport:
    """What ``datasets --verify`` says about one batch."""

    path: Path
    n: int
    label_min: int
    label_max: int


def iter_check(batches: Batches, size: int, labels: bool = False, pixels: bool = False) -> Iterator[BatchReport]:
    """Check every batch's keys, shapes and dtype (and labels if asked), one batch in memory at a time.

    With ``pixels`` every byte of the pixels is read too, by the reader a load uses
    (``datasets --verify``: a truncated or corrupt batch fails here, not in the first extract).
    """
    for p in batches.paths:
        if batches.form == "npz":
            b = _NpzBatch(p, size)
            try:
                y = b.labels() if labels else None
                if pixels:
                    check_fits(b.n * 3 * size * size, f"one batch of {b.n} images ({p})",
                               "check the file (a header may be corrupt)")
                    b.fill(np.empty((b.n, 3, size, size), dtype=np.uint8))
            finally:
                b.close()
            n = b.n
        else:
            _, y = _pickle_batch(p, size)
            n = len(y)
        lo, hi = (int(y.min()), int(y.max())) if y is not None and n else (-1, -1)
        yield BatchReport(p, n, lo, hi)
