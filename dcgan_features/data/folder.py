"""Image folders (torchvision's ``ImageFolder`` layout) as a labelled dataset with a train and a test split.

Layouts, looked for in this order under the folder given as ``--data-dir``:

- ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (or ``DIR/val/<class>/*``): the splits as given;
- ``DIR/<class>/*`` (or ``DIR/train/<class>/*`` alone): one pool of labelled images, split
  into train and test by a seeded, stratified ``test_fraction`` of every class; the rows of
  each split are recorded in the feature file, so every later probe sees the same ones;
- ``DIR/*`` with no class subfolder at all: unlabelled images, a train split only (for ``train``).

Classes are the union of the class folders of both splits, sorted by name; a class with test
images and no train images is refused (a probe could never predict it). Every image is
min-resized (shorter side to the image size, bicubic, PIL's antialiased resampling) and
center-cropped to a square, as the paper's "32x32 min-resized center crops" of ImageNet;
JPEGs are decoded at the smallest DCT scale that still covers the image size
(``Image.draft``), which is what makes 1.28M ImageNet JPEGs take minutes rather than hours.
Decoding runs in ``workers`` processes (default: every core), in chunks, with a progress bar.
A file that cannot be decoded is one :class:`DatasetError` naming it, or, with ``skip_bad``,
dropped and counted.

>>> list_layout.__doc__.splitlines()[0]
'The layout of ``root``: which folders hold which split.'
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import DatasetError
from ..core.memory import check_fits

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
TEST_DIRS = ("test", "val")  # the test split's folder, first found
CHUNK = 64  # images per task sent to a worker: small enough for a smooth bar, large enough to amortise IPC


@dataclass(frozen=True)
class FolderOptions:
    """How a folder is read: the held-out test fraction and its seed, workers, bad files, progress."""

    test_fraction: float = 0.2  # a folder without split subfolders: this share of each class is test
    split_seed: int = 0
    workers: int = 0  # decoding processes; 0: every core this process may use
    skip_bad: bool = False  # drop (and count) images that cannot be decoded instead of refusing the folder
    progress: bool = False
    log: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Layout:
    """Which folders hold which split; ``split_dirs`` is empty when the split is drawn from ``pool``."""

    root: Path
    split_dirs: dict  # split -> folder holding <class>/* (given splits)
    pool: Path | None  # the folder a test_fraction split is drawn from


def list_layout(root: Path) -> Layout:
    """The layout of ``root``: which folders hold which split."""
    train = root / "train"
    test = next((root / d for d in TEST_DIRS if (root / d).is_dir()), None)
    if train.is_dir() and test is not None:
        return Layout(root, {"train": train, "test": test}, None)
    return Layout(root, {}, train if train.is_dir() else root)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _class_files(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """{class folder name: its images} and the images directly in ``folder`` (no class)."""
    by_class = {d.name: _images_under(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    loose = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return {c: f for c, f in by_class.items() if f}, loose


def stratified_test_rows(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of a seeded ``fraction`` of every class (at least one of a class with two or more rows).

    >>> stratified_test_rows(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, -1]), 0.5, 0).size
    5
    """
    rng = np.random.default_rng([seed, 27])
    out = []
    for c in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == c)
        k = int(round(len(rows) * fraction))
        k = min(max(k, 1 if len(rows) > 1 else 0), len(rows) - 1)
        out.append(rng.choice(rows, k, replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def list_split(root: Path, split: str, opts: FolderOptions) -> tuple[list[Path], np.ndarray, list[str] | None, dict]:
    """The files of ``split``, their labels (-1: unlabelled), the class names, and what to record."""
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} not found; pass --data-dir DIR")
    if split not in ("train", "test"):
        raise DatasetError(f"dataset 'folder' has no split {split!r}; available: train, test")
    lay = list_layout(root)
    if lay.split_dirs:
        return _given_split(lay, split)
    by_class, loose = _class_files(lay.pool)
    if not by_class:
        if split == "test" or not loose:
            what = "no images" if not loose else "images but no class subfolders"
            raise DatasetError(f"image folder {str(lay.pool)!r} has {what}: a labelled folder is DIR/<class>/*.png "
                               f"or DIR/train/<class>/* with DIR/test/<class>/* (extensions: "
                               f"{', '.join(IMAGE_EXTENSIONS)})")
        return loose, np.full(len(loose), -1, np.int64), None, {}
    classes = sorted(by_class)
    files = loose + [p for c in classes for p in by_class[c]]
    labels = np.array([-1] * len(loose) + [i for i, c in enumerate(classes) for _ in by_class[c]], np.int64)
    if not 0 < opts.test_fraction < 1:
        raise DatasetError(f"--test-fraction must be between 0 and 1, got {opts.test_fraction}")
    test = stratified_test_rows(labels, opts.test_fraction, opts.split_seed)
    rows = test if split == "test" else np.setdiff1d(np.arange(len(files)), test)
    info = {"folder_split": f"stratified test fraction {opts.test_fraction:g} of each class, seed {opts.split_seed}",
            f"folder_rows_{split}": rows}
    return [files[i] for i in rows], labels[rows], classes, info


def _given_split(lay: Layout, split: str) -> tuple[list[Path], np.ndarray, list[str], dict]:
    """DIR/train/<class>/* and DIR/test (or val)/<class>/*: classes are the union of both."""
    found = {s: _class_files(d) for s, d in lay.split_dirs.items()}
    for s, (by_class, loose) in found.items():
        if not by_class:
            raise DatasetError(f"image folder {str(lay.split_dirs[s])!r} has no class subfolders with images; "
                               f"the {s} split must be {lay.split_dirs[s].name}/<class>/*")
        if loose:
            raise DatasetError(f"{loose[0]} lies outside any class folder of {str(lay.split_dirs[s])!r}; move it "
                               f"into {lay.split_dirs[s].name}/<class>/")
    absent = sorted(set(found["test"][0]) - set(found["train"][0]))
    if absent:
        raise DatasetError(f"class {absent[0]!r} has images in {str(lay.split_dirs['test'] / absent[0])!r} but none "
                           f"in {str(lay.split_dirs['train'])!r}; a probe could never predict it")
    classes = sorted(set(found["train"][0]) | set(found["test"][0]))
    by_class = found[split][0]
    files = [p for c in classes for p in by_class.get(c, [])]
    labels = np.array([i for i, c in enumerate(classes) for _ in by_class.get(c, [])], np.int64)
    return files, labels, classes, {"folder_split": f"given: {lay.split_dirs['train'].name}/ and "
                                                    f"{lay.split_dirs['test'].name}/"}


# ------------------------------------------------------------------------ decoding


def decode_one(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): min-resized (bicubic) then center-cropped."""
    from PIL import Image

    with warnings.catch_warnings():  # past PIL's pixel limit is an error here, not a warning
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = Image.open(path)
    with im:
        if im.format == "JPEG":  # decode at the smallest 1/2^k DCT scale that still covers `size`
            im.draft("RGB", (size, size))
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _decode_chunk(task: tuple[list[str], int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """A worker's chunk: the decoded images and (position, reason) for each file that failed."""
    from PIL import Image, UnidentifiedImageError

    paths, size = task
    out = np.zeros((len(paths), 3, size, size), np.uint8)
    bad = []
    for i, p in enumerate(paths):
        try:
            out[i] = decode_one(Path(p), size)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            bad.append((i, f"claims {im_size(Path(p))} pixels, more than the {Image.MAX_IMAGE_PIXELS} an image may have "
                           "(a decompression bomb?)"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            bad.append((i, type(e).__name__))
    return out, bad


def im_size(path: Path) -> str:
    """``W x H`` as an image file's header says, without decoding it (for the messages)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            return f"{im.width}x{im.height}"
    except Exception:  # noqa: BLE001 - only a message
        return "too many"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def worker_count(requested: int) -> int:
    """``requested`` processes, or every core this process may run on when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def decode(files: list[Path], size: int, opts: FolderOptions) -> tuple[np.ndarray, np.ndarray]:
    """Every file as uint8 (N, 3, size, size) and the mask of those kept (all, unless ``skip_bad``)."""
    from tqdm import tqdm

    check_fits(len(files) * 3 * size * size, f"{len(files)} images of {size}x{size}",
               "pass a smaller --image-size or a folder with fewer images")
    out = np.empty((len(files), 3, size, size), np.uint8)
    ok = np.ones(len(files), bool)
    tasks = [([str(p) for p in files[lo:lo + CHUNK]], size) for lo in range(0, len(files), CHUNK)]
    workers = min(worker_count(opts.workers), max(1, len(tasks)))
    bar = tqdm(total=len(files), unit="img", desc="decoding", disable=None if opts.progress else True,
               dynamic_ncols=True)
    pool = None
    try:
        if workers > 1:
            import multiprocessing

            pool = multiprocessing.get_context("fork").Pool(workers)
            results = pool.imap(_decode_chunk, tasks)
        else:
            results = map(_decode_chunk, tasks)
        for k, (images, bad) in enumerate(results):
            lo = k * CHUNK
            out[lo:lo + len(images)] = images
            for i, why in bad:
                if not opts.skip_bad and why.startswith("claims "):
                    raise DatasetError(f"{files[lo + i]} {why}; remove it or pass --skip-bad")
                if not opts.skip_bad:
                    raise DatasetError(f"{files[lo + i]} is not a readable image ({why}); remove it or pass --skip-bad")
                ok[lo + i] = False
            bar.update(len(images))
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return out, ok


def read(root: Path, split: str, image_size: int, opts: FolderOptions | None = None
         ) -> tuple[np.ndarray, np.ndarray, list[str] | None, dict]:
    """One split of an image folder: uint8 (N, 3, S, S), int64 labels, class names, what to record."""
    opts = opts or FolderOptions()
    files, labels, classes, info = list_split(Path(root), split, opts)
    images, ok = decode(files, image_size, opts)
    skipped = int((~ok).sum())
    if skipped:
        if opts.log:
            opts.log(f"skipped {skipped} unreadable image(s) of the {split} split (--skip-bad), e.g. "
                     f"{files[int(np.flatnonzero(~ok)[0])]}")
        images, labels = images[ok], labels[ok]
        key = f"folder_rows_{split}"
        if key in info:
            info[key] = info[key][ok]
    info[f"skipped_{split}"] = skipped
    return images, labels, classes, info
