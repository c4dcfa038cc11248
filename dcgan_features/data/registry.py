"""Datasets in their real on-disk formats, loaded once into one uint8 tensor.

Every loader returns an :class:`ImageSet`: ``images`` uint8 (N, 3, H, W) (grayscale is
repeated to 3 channels) and ``labels`` int64 (N,) (-1 when unlabeled). Resizing to the
architecture's input happens here, once, in chunks, never per batch. Nothing is ever
downloaded unless ``download=True`` (``--download``); a missing or malformed dataset
raises :class:`~dcgan_features.core.errors.DatasetError` with one line naming what was
expected, where, and the flag that fixes it.

>>> ds = load("digits", "train", image_size=32)
>>> ds.images.shape, ds.images.dtype, ds.labels.dtype
(torch.Size([1297, 3, 32, 32]), torch.uint8, torch.int64)
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import downsampled_imagenet as dsi
from . import folder as image_folder
from . import safe_pickle
from . import stl10
from ..core.errors import DatasetError
from ..core.memory import check_fits

DEFAULT_DATA_DIR = "data"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dims
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dim
IMAGE_EXTENSIONS = image_folder.IMAGE_EXTENSIONS


@dataclass
class ImageSet:
    """A whole split in memory: uint8 images (N, 3, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    split: str
    classes: list[str] | None = None
    # what the feature file keeps for the split's protocol: STL-10's folds, a folder's drawn rows
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max().item()) + 1


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its splits, where it is looked for, and how it is read.

    Everything the loader, ``describe`` and ``--download`` need to know about a dataset is
    here, so a new dataset is one entry of :data:`DATASETS` (no code elsewhere names it).
    """

    name: str
    description: str
    splits: dict[str, int | None]  # split -> expected size (None: varies)
    files: dict[str, tuple[str, ...]]  # split -> files that hold it, relative to the found root
    subdirs: tuple[str, ...]  # candidate roots under --data-dir, in order
    reader: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]  # (root, split) -> uint8 NCHW, int64 labels
    classes: tuple[str, ...] | None = None
    extra_roots: tuple[Path, ...] = field(default=())
    fetch: Callable[[str], None] | None = None  # --download: torchvision fetches every split into a folder
    install_hint: str = ""  # another way to get the files, added to the "not found" message
    class_names: Callable[[Path], list[str] | None] | None = None  # class names read from the files
    header_count: Callable[[Path, str], int] | None = None  # split size from headers only (default: read it)
    # datasets that are any folder of images rather than fixed files: (folder, split, size, options) ->
    # (images, labels, class names, what the feature file keeps)
    open_folder: Callable[..., tuple[np.ndarray, np.ndarray, list[str] | None, dict]] | None = None
    split_info: Callable[[Path, str], dict] | None = None  # what the feature file keeps (STL-10's folds)
    gan_split: str = "train"  # the split `train` fits a GAN on (STL-10: its 100000 unlabeled images)
    # How the paper's protocol on this dataset extracts features: ExtractConfig fields and their
    # values, applied by extract.config.extract_config under the user's own flags; empty: the
    # ExtractConfig defaults. (The paper kept float32 features and no TF32; on SVHN, BatchNorm
    # statistics as the authors' script estimates them.)
    paper_extraction: dict[str, object] = field(default_factory=dict)

    @property
    def downloadable(self) -> bool:
        return self.fetch is not None

    def roots(self, data_dir: str | os.PathLike | None) -> list[Path]:
        base = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)
        return [base / s if s else base for s in self.subdirs] + list(self.extra_roots)

    def locate(self, data_dir: str | os.PathLike | None, split: str | None = None) -> Path | None:
        """The first candidate root holding every file the split (or all splits) needs."""
        needed = self.files[split] if split else tuple(f for fs in self.files.values() for f in fs)
        for root in self.roots(data_dir):
            if all((root / f).is_file() for f in needed):
                return root
        return None

    def missing_message(self, data_dir: str | os.PathLike | None, split: str) -> str:
        where = ", ".join(repr(str(r)) for r in self.roots(data_dir))
        fix = "pass the folder that holds them as --data-dir DIR"
        if self.downloadable:  # --download is an option of `datasets` alone: name the whole command
            fix += f", or fetch them: {fetch_command(self.name)}"
        fix += self.install_hint
        return (f"{self.name} {split} split not found: expected {', '.join(self.files[split])} "
                f"in one of {where}; {fix}")

    def cannot_download(self) -> str:
        """The one line ``--download`` gives for a dataset it cannot fetch."""
        return f"dataset {self.name!r} cannot be downloaded"

    def count(self, root: Path, split: str) -> int:
        """Images in a located split, read from headers where the format has them."""
        return _count(self, root, split)

    def verify(self, data_dir: str | os.PathLike | None, split: str, image_size: int | None = None,
               download_missing: bool = False) -> Iterator[str]:
        """Load one split fully and say what it holds (``datasets --verify``), line by line."""
        ds = load(self.name, split, data_dir=data_dir, image_size=image_size, download_missing=download_missing)
        counts = ds.labels[ds.labels >= 0].bincount().tolist()
        yield (f"{self.name} {split}: images {tuple(ds.images.shape)} {ds.images.dtype}, "
               f"labels per class {counts}")


@dataclass(frozen=True)
class DownsampledImageNetSpec(DatasetSpec):
    """ImageNet at S x S in its released batches (npz or pickle), each batch file looked for
    under --data-dir and the release folders in it (see :mod:`dcgan_features.data.downsampled_imagenet`)."""

    size: int = 32

    def _base(self, data_dir: str | os.PathLike | None) -> Path:
        return Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)

    def roots(self, data_dir: str | os.PathLike | None) -> list[Path]:
        base = self._base(data_dir)
        return [base, base / self.name]  # and the release folders in each

    def locate(self, data_dir: str | os.PathLike | None, split: str | None = None) -> Path | None:
        base = self._base(data_dir)
        found = all(dsi.find(base, self.size, s) for s in ([split] if split else self.splits))
        return base if found else None

    def missing_message(self, data_dir: str | os.PathLike | None, split: str) -> str:
        return dsi.missing_message(self._base(data_dir), self.size, split)

    def cannot_download(self) -> str:
        return dsi.download_message(self.size)

    def count(self, root: Path, split: str) -> int:
        return dsi.count(dsi.find(root, self.size, split), self.size)

    def verify(self, data_dir: str | os.PathLike | None, split: str, image_size: int | None = None,
               download_missing: bool = False) -> Iterator[str]:
        """Every batch's keys, shapes, dtype and label range, one batch in memory at a time."""
        batches = dsi.find(self._base(data_dir), self.size, split)
        if batches is None:
            if download_missing:
                raise DatasetError(self.cannot_download())
            raise DatasetError(self.missing_message(data_dir, split))
        total, lo, hi = 0, None, None
        for b in dsi.iter_check(batches, self.size, labels=True, pixels=True):  # every byte, as a load reads it
            yield f"  {b.path}: {b.n} images 3x{self.size}x{self.size} uint8, labels {b.label_min}..{b.label_max}"
            total += b.n
            lo = b.label_min if lo is None else min(lo, b.label_min)
            hi = b.label_max if hi is None else max(hi, b.label_max)
        yield (f"{self.name} {split}: {total} images in {len(batches.paths)} {batches.form} batches "
               f"(expected {self.splits[split]}), labels {lo}..{hi} (0-based)")


def _imagenet_spec(size: int) -> DownsampledImageNetSpec:
    def reader(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        return dsi.read(dsi.find(root, size, split), size)

    return DownsampledImageNetSpec(
        f"imagenet{size}", f"Downsampled ImageNet {size}x{size} (Chrabaszcz et al. 2017): the npz or pickle batches, "
        f"in Imagenet{size}_train[_npz]/ and Imagenet{size}_val[_npz]/ or flat",
        dict(dsi.SPLIT_SIZES),
        {s: tuple(f"{dsi.release_folders(size, s, 'npz')[0]}/{n}" for n in dsi.batch_names(s, "npz"))
         for s in dsi.SPLIT_SIZES},
        ("",), reader, size=size)


# ------------------------------------------------------------------------- readers


def _read_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        path = root / name
        data, labels = _cifar_arrays(path, b"labels", lambda e: f"is not a readable CIFAR-10 batch "
                                     f"({type(e).__name__}); re-download it: {fetch_command('cifar10')}")
        xs.append(data)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_arrays(path: Path, label_key: bytes,
                  unreadable: Callable[[Exception], str]) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 or CIFAR-100 pickle's images (N, 3, 32, 32) and ``label_key`` labels, read through
    the restricted unpickler and :func:`~.safe_pickle.plain_array` (no shared-list bombs);
    ``unreadable(error)`` says what is wrong with a file whose fields are missing or malformed."""
    batch = _read_cifar10_pickle(path)
    try:
        data = safe_pickle.plain_array(batch[b"data"], np.uint8, f"{path}: 'data'")
        labels = safe_pickle.plain_array(batch[label_key], np.int64, f"{path}: {label_key.decode()!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path} {unreadable(e)}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(f"{path}: expected data (N, 3072) and N labels, found data "
                           f"{data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar10_pickle(path: Path) -> dict:
    """One CIFAR-10 file (a pickle by its format) through the restricted unpickler."""
    try:
        batch = safe_pickle.load(path, encoding="bytes")
    except safe_pickle.UnreadablePickleError as e:
        raise DatasetError(f"{path} is not a readable CIFAR-10 batch ({e.reason}); "
                           f"re-download it: {fetch_command('cifar10')}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 batch (a pickled {type(batch).__name__}, not a dict); "
                           f"re-download it: {fetch_command('cifar10')}")
    return batch


def _cifar100_reader(label_key: bytes) -> Callable[[Path, str], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-100's ``train`` or ``test`` pickle: data (N, 3072) and its fine (or coarse) labels."""

    def read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _cifar_arrays(root / split, label_key, lambda e: f"is not a readable CIFAR-100 file (no "
                             f"{label_key.decode()}: {type(e).__name__}); re-download it with --download")

    return read


def _cifar100_classes(names_key: bytes) -> Callable[[Path], list[str] | None]:
    def read(root: Path) -> list[str] | None:
        try:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in _read_cifar10_pickle(root / "meta")[names_key]]
        except (DatasetError, KeyError, TypeError):
            return None

    return read


def _read_cifar10_classes(root: Path) -> list[str] | None:
    try:
        meta = _read_cifar10_pickle(root / "batches.meta")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[b"label_names"]]
    except (DatasetError, KeyError, TypeError):  # the class names are optional; a payload still refuses
        return None


def _read_svhn(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    path = root / f"{split}_32x32.mat"
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # noqa: BLE001 - scipy.io raises assorted types on corrupt input
        raise DatasetError(f"{path} is not a readable SVHN .mat file ({type(e).__name__}); "
                           f"re-download it: {fetch_command('svhn')}") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path} has no 'X' and 'y' arrays (found: {', '.join(k for k in mat if not k.startswith('__')) or 'none'})")
    X, y_raw = mat["X"], mat["y"].reshape(-1)
    if X.dtype != np.uint8:  # the format's pixels are bytes; a cast would wrap floats around silently
        raise DatasetError(f"{path}: X holds {X.dtype} pixels, SVHN's are uint8; re-download it: {fetch_command('svhn')}")
    if y_raw.dtype.kind not in "iuf" or not np.isin(y_raw, np.arange(1, 11)).all():
        raise DatasetError(f"{path}: y must hold the digit classes 1..10 (10 meaning 0); re-download it: {fetch_command('svhn')}")
    y = y_raw.astype(np.int64)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] != len(y):
        raise DatasetError(f"{path}: expected X of shape (32, 32, 3, N) and N labels, found X {X.shape} and {len(y)} labels")
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return np.ascontiguousarray(X.transpose(3, 2, 0, 1), dtype=np.uint8), y  # HWCN -> NCHW


def _read_idx(path: Path, magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path} is not a readable gzip file ({type(e).__name__}: truncated or corrupt)") from None
    if len(raw) < 8:
        raise DatasetError(f"{path} is too short to be an idx file")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise DatasetError(f"{path}: wrong idx magic number {found}, expected {magic} "
                           f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'} file)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but holds {body.size} bytes: truncated or corrupt")
    return body.reshape(dims).copy()  # frombuffer is read-only; torch wants writable memory


def _read_idx_pair(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST and Fashion-MNIST: the idx images and labels files of a split (same names in both)."""
    return _read_fashion_mnist(root, split)


def _read_fashion_mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise DatasetError(f"{root}: {split} images {images.shape} and labels {labels.shape} disagree")
    return images[:, None], labels


DIGITS_TEST_SIZE = 500
DIGITS_SEED = 0


def _read_digits(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=DIGITS_TEST_SIZE,
                                           random_state=DIGITS_SEED, stratify=d.target)
    idx = np.sort(idx_train if split == "train" else idx_test)
    return images[idx], d.target[idx].astype(np.int64)


def make_synthetic(n: int, size: int = 32, num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-structured colour images: each class a blob of its own colour and place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    angle = 2 * np.pi * labels / num_classes
    cx, cy = 0.5 + 0.25 * np.cos(angle), 0.5 + 0.25 * np.sin(angle)
    blob = np.exp(-(((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / 0.02))
    colour = np.stack([np.cos(angle), np.cos(angle + 2.1), np.cos(angle + 4.2)], 1) * 0.5 + 0.5
    img = blob[:, None] * colour[:, :, None, None] + 0.15 * rng.standard_normal((n, 3, size, size))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


SYNTHETIC_SIZES = {"train": 1000, "test": 200}


def _read_synthetic(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic(SYNTHETIC_SIZES[split], seed={"train": 0, "test": 1}[split])


def _fetch_cifar10(root: str) -> None:
    import torchvision.datasets as tvd

    tvd.CIFAR10(root, train=True, download=True)


def _fetch_svhn(root: str) -> None:
    import torchvision.datasets as tvd

    for split in ("train", "test", "extra"):
        tvd.SVHN(root, split=split, download=True)


def _fetch_mnist(root: str) -> None:
    import torchvision.datasets as tvd

    tvd.MNIST(root, train=True, download=True)
    tvd.MNIST(root, train=False, download=True)


def _fetch_cifar100(root: str) -> None:
    import torchvision.datasets as tvd

    tvd.CIFAR100(root, train=True, download=True)


def _fetch_stl10(root: str) -> None:
    import torchvision.datasets as tvd

    tvd.STL10(root, split="train+unlabeled", download=True)


def _fetch_fashion_mnist(root: str) -> None:
    import torchvision.datasets as tvd

    tvd.FashionMNIST(root, train=True, download=True)
    tvd.FashionMNIST(root, train=False, download=True)


def _count_svhn(root: Path, split: str) -> int:
    import scipy.io

    path = root / f"{split}_32x32.mat"
    try:
        shapes = dict((n, s) for n, s, _ in scipy.io.whosmat(path))
    except Exception:  # noqa: BLE001 - scipy.io raises assorted types on corrupt input
        raise DatasetError(f"{path} corrupt") from None
    if "X" not in shapes:
        raise DatasetError(f"{path} has no X")
    return int(shapes["X"][3])


def _count_fashion_mnist(root: Path, split: str) -> int:
    path = root / _fashion_files(split)[1]
    with gzip.open(path, "rb") as f:
        try:
            head = f.read(8)
        except (OSError, EOFError, zlib.error):
            raise DatasetError(f"{path} corrupt") from None
    if len(head) < 8 or struct.unpack(">I", head[:4])[0] != IDX_LABELS_MAGIC:
        raise DatasetError(f"{path} corrupt")
    return int(struct.unpack(">I", head[4:8])[0])


def _fashion_files(split: str) -> tuple[str, ...]:
    prefix = "train" if split == "train" else "t10k"
    return (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("cifar10", "CIFAR-10, torchvision's python pickles",
                    {"train": 50000, "test": 10000},
                    {"train": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("batches.meta",),
                     "test": ("test_batch", "batches.meta")},
                    ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", ""), _read_cifar10, fetch=_fetch_cifar10,
                    class_names=_read_cifar10_classes, paper_extraction={"dtype": "float32", "tf32": False}),
        DatasetSpec("svhn", "SVHN cropped digits, the .mat files (extra is SVHN's 531k easier digits)",
                    {"train": 73257, "test": 26032, "extra": 531131},
                    {s: (f"{s}_32x32.mat",) for s in ("train", "test", "extra")},
                    ("", "svhn"), _read_svhn, classes=tuple(str(i) for i in range(10)), fetch=_fetch_svhn,
                    header_count=_count_svhn,
                    paper_extraction={"bn": "authors", "dtype": "float32", "tf32": False}),
        DatasetSpec("fashion-mnist", "Fashion-MNIST, the four idx .gz files",
                    {"train": 60000, "test": 10000},
                    {s: _fashion_files(s) for s in ("train", "test")},
                    ("fashion-mnist", "FashionMNIST/raw", ""), _read_fashion_mnist,
                    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                             "Sneaker", "Bag", "Ankle boot"),
                    extra_roots=(DEBIAN_FASHION_MNIST,), fetch=_fetch_fashion_mnist,
                    install_hint=" (or: apt-get install dataset-fashion-mnist)", header_count=_count_fashion_mnist),
        DatasetSpec("mnist", "MNIST, the four idx .gz files (LeCun et al. 1998)",
                    {"train": 60000, "test": 10000},
                    {s: _fashion_files(s) for s in ("train", "test")},
                    ("mnist", "MNIST/raw", ""), _read_idx_pair, classes=tuple(str(i) for i in range(10)),
                    fetch=_fetch_mnist, header_count=_count_fashion_mnist),
        *[DatasetSpec(name, f"CIFAR-100, the python pickles train, test, meta ({what})",
                      {"train": 50000, "test": 10000}, {s: (s, "meta") for s in ("train", "test")},
                      ("cifar-100-python", "cifar100/cifar-100-python", ""), _cifar100_reader(key),
                      fetch=_fetch_cifar100, class_names=_cifar100_classes(names))
          for name, what, key, names in (
              ("cifar100", "the 100 fine labels", b"fine_labels", b"fine_label_names"),
              ("cifar100-coarse", "the 20 coarse labels, the superclasses", b"coarse_labels",
               b"coarse_label_names"))],
        DatasetSpec("stl10", "STL-10, the binary release stl10_binary/ (96x96; 10 predefined folds of 1000 "
                    "train images; unlabeled: 100000 images for training the GAN)",
                    dict(stl10.SPLIT_SIZES),
                    {s: stl10.files(s) + (("fold_indices.txt",) if s == "train" else ()) for s in stl10.SPLIT_SIZES},
                    (stl10.FOLDER, f"stl10/{stl10.FOLDER}", ""), stl10.read, fetch=_fetch_stl10,
                    class_names=stl10.class_names, header_count=stl10.count, split_info=stl10.split_info,
                    gan_split="unlabeled"),
        DatasetSpec("digits", "scikit-learn's 8x8 digits, embedded (seeded stratified split)",
                    {"train": 1797 - DIGITS_TEST_SIZE, "test": DIGITS_TEST_SIZE}, {"train": (), "test": ()},
                    ("",), _read_digits, classes=tuple(str(i) for i in range(10))),
        DatasetSpec("folder", "an image folder: DIR/train/<class>/* + DIR/test|val/<class>/*, or DIR/<class>/* "
                    "(a seeded stratified --test-fraction is test), or DIR/* unlabelled (train only)",
                    {"train": None, "test": None}, {"train": (), "test": ()}, ("",),
                    lambda root, split: image_folder.read(root, split, 64)[:2], open_folder=image_folder.read),
        DatasetSpec("synthetic", "generated class-structured images, for tests",
                    dict(SYNTHETIC_SIZES), {"train": (), "test": ()}, ("",), _read_synthetic,
                    classes=tuple(str(i) for i in range(10))),
        _imagenet_spec(32),
        _imagenet_spec(64),
    ]
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}") from None


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise DatasetError(f"dataset {spec.name!r} has no split {split!r}; available: {', '.join(spec.splits)}")


def missing(name: str, split: str, data_dir: str | os.PathLike | None = None) -> str | None:
    """The one line :func:`load` would raise because ``split`` of ``name`` is not on disk, or None.

    Only looks for the files (``--dry-run``); a file that is there but malformed is found by :func:`load`.
    """
    spec = get_dataset(name)
    _check_split(spec, split)
    if spec.open_folder is not None:
        root = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)
        return None if root.is_dir() else f"image folder {str(root)!r} not found; pass --data-dir DIR"
    return None if spec.locate(data_dir, split) is not None else spec.missing_message(data_dir, split)


def fetch_command(name: str) -> str:
    """The command that downloads ``name`` and checks it (what a hint names instead of a bare ``--download``).

    >>> fetch_command("svhn")
    '`dcgan-features datasets --verify svhn --download --data-dir DIR`'
    """
    return f"`dcgan-features datasets --verify {name} --download --data-dir DIR`"


def download(name: str, data_dir: str | os.PathLike | None) -> None:
    """Fetch a public dataset with torchvision into ``data_dir`` (only when asked)."""
    spec = get_dataset(name)
    if not spec.downloadable:
        raise DatasetError(spec.cannot_download())
    root = str(Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR))
    os.makedirs(root, exist_ok=True)
    try:
        spec.fetch(root)
    except Exception as e:  # noqa: BLE001 - network errors come in many types
        raise DatasetError(f"download of {name} into {root!r} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def load(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
         image_size: int | None = None, download_missing: bool = False,
         folder: image_folder.FolderOptions | None = None, limit: int | None = None) -> ImageSet:
    """Load one split as uint8 (N, 3, S, S), resized once to ``image_size`` if given.

    ``folder``: how an image folder is split and decoded (:class:`~.folder.FolderOptions`).
    ``limit`` keeps the first rows only, before the resize (so `--image-size 1024 --limit 10`
    resizes 10 images, not the split).
    """
    spec = get_dataset(name)
    _check_split(spec, split)
    classes: list[str] | None = list(spec.classes) if spec.classes else None
    info: dict = {}
    if spec.open_folder is not None:
        root = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)
        if not root.is_dir():
            raise DatasetError(f"image folder {str(root)!r} not found; pass --data-dir DIR")
        images, labels, classes, info = spec.open_folder(root, split, image_size or 64, folder)
    else:
        root = spec.locate(data_dir, split) if spec.files[split] else Path(".")
        if root is None and download_missing:
            download(name, data_dir)
            root = spec.locate(data_dir, split)
        if root is None:
            raise DatasetError(spec.missing_message(data_dir, split))
        images, labels = spec.reader(root, split)
        if spec.class_names is not None:
            classes = spec.class_names(root) or classes
        if spec.split_info is not None:
            info = spec.split_info(root, split)
    images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(np.ascontiguousarray(images))
    return ImageSet(to_rgb_size(x, image_size), torch.from_numpy(np.ascontiguousarray(labels)).long(),
                    name, split, classes, info)


def to_rgb_size(images: torch.Tensor, size: int | None, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, 3, size, size): gray repeated, bilinear antialiased resize.

    Works in chunks so SVHN-sized sets never need a float copy of the whole tensor.
    """
    if images.shape[1] not in (1, 3):
        raise DatasetError(f"images must have 1 or 3 channels, found {images.shape[1]}")
    if size is None or tuple(images.shape[2:]) == (size, size):
        if images.shape[1] == 1:
            check_fits(images.numel() * 3, f"{images.shape[0]} RGB images of {images.shape[2]}x{images.shape[3]}",
                       "use fewer images (extract --limit N)")
            return images.expand(-1, 3, -1, -1).contiguous()
        return images
    # the float copy of a chunk is bounded too: 4096 images of 1024x1024 would be 51 GB of float32
    chunk = max(1, min(chunk, (256 << 20) // (4 * 3 * max(size * size, images[0, 0].numel()))))
    check_fits(images.shape[0] * 3 * size * size, f"{images.shape[0]} images resized to {size}x{size}",
               "use fewer images (extract --limit N) or a smaller --image-size")
    out = torch.empty((images.shape[0], 3, size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    return out


def describe(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per dataset: where it looks, whether it is present, and its split sizes.

    Sizes are read from headers where the format allows (idx, .mat), so this stays cheap.
    """
    rows = []
    for spec in DATASETS.values():
        if spec.open_folder is not None:
            root = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR)
            rows.append({"name": spec.name, "description": spec.description, "where": str(root),
                         "present": None, "splits": {}})
            continue
        sizes: dict[str, int | str] = {}
        found = None
        for split in spec.splits:
            if not spec.files[split]:
                sizes[split] = spec.splits[split]
                continue
            root = spec.locate(data_dir, split)
            if root is None:
                sizes[split] = "missing"
                continue
            found = found or root
            try:
                sizes[split] = spec.count(root, split)
            except DatasetError:
                sizes[split] = "corrupt"
        embedded = all(not f for f in spec.files.values())
        present = embedded or all(isinstance(v, int) for v in sizes.values())
        where = "(embedded)" if embedded else str(found) if found else " | ".join(str(r) for r in spec.roots(data_dir))
        rows.append({"name": spec.name, "description": spec.description, "where": where,
                     "present": present, "splits": sizes})
    return rows


def _count(spec: DatasetSpec, root: Path, split: str) -> int:
    return spec.header_count(root, split) if spec.header_count is not None else len(spec.reader(root, split)[1])
