"""The HDF5 feature file (DESIGN section 5): its schema, metadata and reader.

Schema, one file per model x dataset, one group per split::

    /<split>/features   (N, D) float16 (default) or float32, chunks of whole rows (~1 MiB)
    /<split>/labels     (N,) int64, -1 when unlabeled
    /<split>/indices    (N,) int64, row -> index in the source split
    attrs on /:         format_version, dataset, architecture, width, layers (JSON list),
                        layer_dims (JSON list), grid, bn_mode, checkpoint_sha256,
                        source (the --model SPEC), trained_on, postprocess, package_version, created
    attrs on /<split>:  n_rows, complete (bool)
    /_source/<name>/    what a source fitted and keeps (kmeans: mean, whitening, centroids)
    /_dataset/          what the dataset's protocol needs: attrs classes (JSON list of names) and
                        e.g. folder_split; arrays e.g. folds (STL-10's predefined train rows),
                        folder_rows_<split> (a folder's drawn rows, positions in its sorted file list)

Writing is :class:`~dcgan_features.extract.writer.FeatureWriter`'s job (its own module).
Crash safety: it writes ``<out>.partial`` beside ``<out>`` and moves it
onto ``<out>`` (``os.replace``) only once every split is complete, so a file under the
final name is always whole. While partial, a ``/_resume`` group holds what a resumed run
needs (rows committed per split, the batch size, the re-estimated BN statistics); it is
deleted before the move. Rows are committed only after their data is flushed, and the
feature dataset's chunks are allocated when it is created, so later writes change no
HDF5 metadata but that counter. A partial file that cannot be opened (killed while HDF5
was writing its metadata) is started over.

>>> import tempfile, os, numpy as np
>>> from dcgan_features.extract.writer import FeatureWriter
>>> meta = FileMeta("digits", "dcgan32", 4, ("d1",), (64,), 4, "running", "0" * 64)
>>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
>>> with FeatureWriter(path, meta, {"test": (np.array([3, 1]), np.arange(2))}) as w:
...     w.write("test", 0, np.ones((2, 64), np.float16)); w.complete("test")
>>> with FeatureFile(path) as ff:
...     ff.splits, ff.dim, ff.labels("test").tolist(), ff.read("test", 1, 2).shape
(['test'], 64, [3, 1], (1, 64))
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import torch

from .. import __version__
from ..core.errors import FeatureFileError

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20  # target size of one HDF5 chunk of whole rows
RESUME = "_resume"  # group that exists only in partial files
SOURCE = "_source"  # what a source fitted and keeps with its features (a K-means dictionary)
DATASET = "_dataset"  # what the dataset's protocol needs: class names, STL-10's folds, a folder's drawn rows
DTYPES = ("float16", "float32")


def partial_path(path: str | os.PathLike) -> Path:
    """Where an unfinished extraction for ``path`` lives."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def chunk_rows(dim: int, itemsize: int, n_rows: int) -> int:
    """Whole rows per ~1 MiB chunk (never more rows than the split has)."""
    return max(1, min(n_rows, CHUNK_BYTES // max(1, dim * itemsize)))


@dataclass(frozen=True)
class FileMeta:
    """What a feature file was made from: the root attrs, plus the features' dtype."""

    dataset: str
    architecture: str
    width: int
    layers: tuple[str, ...]
    layer_dims: tuple[int, ...]
    grid: int
    bn_mode: str
    checkpoint_sha256: str
    dtype: str = "float16"
    source: str = field(default="", compare=False)  # the --model SPEC; informative, never refused on
    # the dataset the model was trained on ("none": random init); implied by the checkpoint,
    # so it is recorded but not compared (files written before it existed still match)
    trained_on: str = field(default="", compare=False)
    # what the source's recipe does to the features before a probe ("coates": K-means's
    # standardisation); ``probe`` applies it by default
    postprocess: str = field(default="", compare=False)
    # the class names and what the protocol needs (DATASET group); ``dataset_key`` fingerprints the
    # arrays so a folder split drawn with another seed is another file
    classes: tuple[str, ...] = field(default=(), compare=False)
    dataset_info: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    dataset_key: str = ""

    @property
    def dim(self) -> int:
        return int(sum(self.layer_dims))

    def write_dataset_info(self, f: h5py.File) -> None:
        """The DATASET group: class names as a JSON attr, scalars as attrs, arrays as datasets."""
        if not self.classes and not self.dataset_info:
            return
        g = f.create_group(DATASET)
        g.attrs["classes"] = json.dumps(list(self.classes))
        for k, v in self.dataset_info.items():
            if isinstance(v, np.ndarray):
                g.create_dataset(k, data=v)
            else:
                g.attrs[k] = v

    def attrs(self) -> dict:
        """Root attrs as written (lists JSON-encoded), without ``created``."""
        return {"format_version": FORMAT_VERSION, "dataset": self.dataset, "architecture": self.architecture,
                "width": int(self.width), "layers": json.dumps(list(self.layers)),
                "layer_dims": json.dumps([int(d) for d in self.layer_dims]), "grid": int(self.grid),
                "bn_mode": self.bn_mode, "checkpoint_sha256": self.checkpoint_sha256,
                "source": self.source, "trained_on": self.trained_on, "postprocess": self.postprocess,
                "package_version": __version__, **({"dataset_key": self.dataset_key} if self.dataset_key else {})}

    def differences(self, other: "FileMeta") -> list[str]:
        """Human-readable ``field X (asked Y)`` for each field that differs."""
        out = []
        for f in fields(self):
            if not f.compare:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                show = (lambda v: v[:12]) if f.name == "checkpoint_sha256" else (lambda v: v)
                out.append(f"{f.name} {format_value(show(mine))} (asked {format_value(show(theirs))})")
        return out


def format_value(v) -> str:
    """A metadata value as shown in messages: tuples comma-joined."""
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def format_size(n: int) -> str:
    """Bytes as MiB or GiB, for messages."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def decode_attr(v):
    """An HDF5 attribute as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_meta(f: h5py.File, path: str) -> dict:
    required = ("format_version", "dataset", "architecture", "layers", "layer_dims", "grid", "bn_mode",
                "checkpoint_sha256")
    meta = {k: decode_attr(v) for k, v in f.attrs.items()}
    if any(k not in meta for k in required):
        raise FeatureFileError(f"{path!r} is an HDF5 file but not a dcgan-features feature file "
                               f"(root attrs {', '.join(required[:3])}, ... missing)")
    for key in ("format_version", "grid", "width"):
        if key in meta and not _is_int(meta[key]):
            raise FeatureFileError(f"{path!r}: root attr {key} is {meta[key]!r}, not an integer; the file is "
                                   "damaged or foreign: extract it again")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise FeatureFileError(f"{path!r} has feature format version {meta['format_version']}; this package "
                               f"reads up to {FORMAT_VERSION}: upgrade dcgan-features")
    try:
        layers, dims = json.loads(meta["layers"]), json.loads(meta["layer_dims"])
        if not isinstance(layers, list) or not isinstance(dims, list) or not all(_is_int(d) for d in dims):
            raise TypeError
        meta["layers"] = [str(x) for x in layers]
        meta["layer_dims"] = [int(x) for x in dims]
    except (ValueError, TypeError):
        raise FeatureFileError(f"{path!r}: root attrs layers/layer_dims are not JSON lists (of integer "
                               "dims)") from None
    if len(meta["layers"]) != len(meta["layer_dims"]) or any(d < 1 for d in meta["layer_dims"]):
        raise FeatureFileError(f"{path!r}: root attrs name {len(meta['layers'])} layers but give "
                               f"{len(meta['layer_dims'])} dims {meta['layer_dims']}; extract it again")
    return meta


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_split(g: h5py.Group, split: str, dim: int, path: str) -> None:
    """A split's datasets agree with the root attrs and with each other (checked on open)."""
    if "features" not in g or "labels" not in g or "n_rows" not in g.attrs:
        raise FeatureFileError(f"{path!r}: split {split!r} lacks features/labels/n_rows; "
                               f"not a dcgan-features feature file")
    feats, labels, n = g["features"], g["labels"], decode_attr(g.attrs["n_rows"])
    if not _is_int(n) or n < 0:
        raise FeatureFileError(f"{path!r}: split {split!r} has n_rows {n!r}, not a row count")
    if feats.ndim != 2 or feats.shape != (n, dim):
        raise FeatureFileError(f"{path!r}: split {split!r} features have shape {feats.shape}; the root attrs "
                               f"(layer_dims, n_rows) say ({n}, {dim}); extract it again")
    if feats.dtype.kind != "f":
        raise FeatureFileError(f"{path!r}: split {split!r} features are {feats.dtype}, not float16/float32")
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise FeatureFileError(f"{path!r}: split {split!r} labels are {labels.dtype} of shape {labels.shape}; "
                               f"expected {n} integers (-1 for unlabeled)")


def _open_h5(path: Path, mode: str, **kw) -> h5py.File:
    if not path.is_file():
        raise FeatureFileError(f"feature file {str(path)!r} not found; write one with `dcgan-features extract`")
    try:
        return h5py.File(path, mode, **kw)
    except OSError as e:
        reason = str(e).split("(")[-1].rstrip(")") if "(" in str(e) else type(e).__name__
        raise FeatureFileError(f"{str(path)!r} is not a readable HDF5 feature file "
                               f"(truncated, corrupt or another format: {reason})") from None


# -------------------------------------------------------------------------- reader


class FeatureFile:
    """Read a feature file: metadata, labels, row slices, chunks as torch tensors.

    Every data accessor refuses a split that is missing or incomplete.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = _open_h5(self.path, "r")
        try:
            self.meta = _read_meta(self._f, str(self.path))
            self.splits = [k for k, v in self._f.items() if isinstance(v, h5py.Group) and not k.startswith("_")]
            for s in self.splits:
                _check_split(self._f[s], s, int(sum(self.meta["layer_dims"])), str(self.path))
        except BaseException:
            self._f.close()
            raise
        self.dim = int(sum(self.meta["layer_dims"]))
        self._lock = threading.Lock()

    def __enter__(self) -> "FeatureFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def resume_key(self) -> str | None:
        """The run settings a partial file was started with (None: not a partial file)."""
        res = self._f.get(RESUME)
        return None if res is None else decode_attr(res.attrs.get("key", ""))

    def __repr__(self) -> str:
        return f"FeatureFile({str(self.path)!r}, splits={self.splits}, dim={self.dim})"

    @property
    def dtype(self) -> str:
        """Storage dtype of the features (``float16`` or ``float32``)."""
        return str(self._f[self.splits[0]]["features"].dtype) if self.splits else "float16"

    def file_meta(self) -> FileMeta:
        m = self.meta
        return FileMeta(m["dataset"], m["architecture"], int(m.get("width", 0)), tuple(m["layers"]),
                        tuple(m["layer_dims"]), int(m["grid"]), m["bn_mode"], m["checkpoint_sha256"], self.dtype,
                        m.get("source", ""), str(m.get("trained_on", "")), str(m.get("postprocess", "")),
                        dataset_key=str(m.get("dataset_key", "")))

    def dataset_info(self) -> dict:
        """What the dataset's protocol needs (DATASET group): ``classes`` (list, maybe empty) and the rest."""
        g = self._f.get(DATASET)
        if g is None:
            return {"classes": []}
        out = {k: decode_attr(v) for k, v in g.attrs.items()}
        try:
            out["classes"] = [str(c) for c in json.loads(out.get("classes", "[]"))]
        except (ValueError, TypeError):
            raise FeatureFileError(f"{str(self.path)!r}: /{DATASET} attr classes is not a JSON list of names") from None
        out.update({k: np.asarray(v[...]) for k, v in g.items()})
        return out

    def is_complete(self, split: str) -> bool:
        return split in self.splits and bool(self._f[split].attrs.get("complete", False))

    def n_rows(self, split: str) -> int:
        self._group(split)
        return int(self._f[split].attrs["n_rows"])

    def require(self, split: str) -> None:
        """Raise FeatureFileError unless ``split`` is present and complete."""
        self._group(split)
        if not self.is_complete(split):
            raise FeatureFileError(f"split {split!r} of {str(self.path)!r} is incomplete (an extraction was "
                                   f"interrupted); run the same `dcgan-features extract` command again to finish it")
        if RESUME in self._f:  # complete split of a .partial or torchrun part file: not a finished file
            raise FeatureFileError(f"{str(self.path)!r} is an unfinished extraction (a partial or part file); run "
                                   f"the same `dcgan-features extract` command again to finish it")

    def _group(self, split: str) -> h5py.Group:
        if split not in self.splits:
            raise FeatureFileError(f"{str(self.path)!r} has no split {split!r} (has: {', '.join(self.splits) or 'none'})")
        return self._f[split]

    def labels(self, split: str) -> np.ndarray:
        """A complete split's labels, int64; -1 marks an unlabeled row, anything lower is refused."""
        self.require(split)
        y = np.asarray(self._f[split]["labels"][...], dtype=np.int64)  # integer dtype checked on open
        if y.size and y.min() < -1:
            raise FeatureFileError(f"{str(self.path)!r}: split {split!r} has label {int(y.min())}; labels are "
                                   "class numbers >= 0, or -1 for unlabeled rows")
        return y

    def indices(self, split: str) -> np.ndarray:
        self.require(split)
        return np.asarray(self._f[split]["indices"][...], dtype=np.int64)

    def read(self, split: str, lo: int = 0, hi: int | None = None, dtype=np.float32) -> np.ndarray:
        """Rows ``[lo, hi)`` of a complete split as a numpy array of ``dtype``."""
        self.require(split)
        ds = self._f[split]["features"]
        hi = ds.shape[0] if hi is None else min(int(hi), ds.shape[0])
        lo = max(0, min(int(lo), hi))
        out = np.empty((hi - lo, ds.shape[1]), dtype=ds.dtype)
        if hi > lo:
            with self._lock:
                ds.read_direct(out, np.s_[lo:hi])
        return out if out.dtype == np.dtype(dtype) else out.astype(dtype)

    def iter_chunks(self, split: str, device: str | torch.device = "cpu", chunk_rows: int | None = None,
                    dtype: torch.dtype = torch.float32) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start_row, tensor)`` chunks of a split on ``device``.

        Rows travel in their storage dtype and are widened on the device; the next chunk is
        read from disk by a helper thread while the caller works on the current one.
        """
        self.require(split)
        device = torch.device(device)
        n = self.n_rows(split)
        ds = self._f[split]["features"]
        step = chunk_rows or max(ds.chunks[0], (64 << 20) // max(1, self.dim * ds.dtype.itemsize))
        starts = list(range(0, n, step))
        if not starts:
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.read, split, starts[0], starts[0] + step, ds.dtype)
            for i, s in enumerate(starts):
                block = pending.result()
                if i + 1 < len(starts):
                    pending = pool.submit(self.read, split, starts[i + 1], starts[i + 1] + step, ds.dtype)
                t = torch.from_numpy(block)
                if device.type == "cuda":
                    t = t.pin_memory()
                yield s, t.to(device, non_blocking=True).to(dtype)
