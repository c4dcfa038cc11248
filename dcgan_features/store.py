"""The HDF5 feature file (DESIGN section 5): a streaming, resumable writer and a reader.

Schema, one file per model x dataset, one group per split::

    /<split>/features   (N, D) float16 (default) or float32, chunks of whole rows (~1 MiB)
    /<split>/labels     (N,) int64, -1 when unlabeled
    /<split>/indices    (N,) int64, row -> index in the source split
    attrs on /:         format_version, dataset, architecture, width, layers (JSON list),
                        layer_dims (JSON list), grid, bn_mode, checkpoint_sha256,
                        package_version, created
    attrs on /<split>:  n_rows, complete (bool)

Crash safety: :class:`FeatureWriter` writes ``<out>.partial`` beside ``<out>`` and moves it
onto ``<out>`` (``os.replace``) only once every split is complete, so a file under the
final name is always whole. While partial, a ``/_resume`` group holds what a resumed run
needs (rows committed per split, the batch size, the re-estimated BN statistics); it is
deleted before the move. Rows are committed only after their data is flushed, and the
feature dataset's chunks are allocated when it is created, so later writes change no
HDF5 metadata but that counter. A partial file that cannot be opened (killed while HDF5
was writing its metadata) is started over.

>>> import tempfile, os, numpy as np
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
import shutil
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Mapping

import h5py
import numpy as np
import torch

from . import __version__
from .atomic import atomic_path, check_writable_dir
from .errors import FeatureFileError

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20  # target size of one HDF5 chunk of whole rows
RESUME = "_resume"  # group that exists only in partial files
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

    @property
    def dim(self) -> int:
        return int(sum(self.layer_dims))

    def attrs(self) -> dict:
        """Root attrs as written (lists JSON-encoded), without ``created``."""
        return {"format_version": FORMAT_VERSION, "dataset": self.dataset, "architecture": self.architecture,
                "width": int(self.width), "layers": json.dumps(list(self.layers)),
                "layer_dims": json.dumps([int(d) for d in self.layer_dims]), "grid": int(self.grid),
                "bn_mode": self.bn_mode, "checkpoint_sha256": self.checkpoint_sha256,
                "package_version": __version__}

    def differences(self, other: "FileMeta") -> list[str]:
        """Human-readable ``field X (asked Y)`` for each field that differs."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                show = (lambda v: v[:12]) if f.name == "checkpoint_sha256" else (lambda v: v)
                out.append(f"{f.name} {_fmt(show(mine))} (asked {_fmt(show(theirs))})")
        return out


def _fmt(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _decode(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_meta(f: h5py.File, path: str) -> dict:
    required = ("format_version", "dataset", "architecture", "layers", "layer_dims", "grid", "bn_mode",
                "checkpoint_sha256")
    meta = {k: _decode(v) for k, v in f.attrs.items()}
    if any(k not in meta for k in required):
        raise FeatureFileError(f"{path!r} is an HDF5 file but not a dcgan-features feature file "
                               f"(root attrs {', '.join(required[:3])}, ... missing)")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise FeatureFileError(f"{path!r} has feature format version {meta['format_version']}; this package "
                               f"reads up to {FORMAT_VERSION}: upgrade dcgan-features")
    try:
        meta["layers"] = [str(x) for x in json.loads(meta["layers"])]
        meta["layer_dims"] = [int(x) for x in json.loads(meta["layer_dims"])]
    except (ValueError, TypeError):
        raise FeatureFileError(f"{path!r}: root attrs layers/layer_dims are not JSON lists") from None
    return meta


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
            self.splits = [k for k, v in self._f.items() if isinstance(v, h5py.Group) and k != RESUME]
            for s in self.splits:
                g = self._f[s]
                if "features" not in g or "labels" not in g or "n_rows" not in g.attrs:
                    raise FeatureFileError(f"{str(self.path)!r}: split {s!r} lacks features/labels/n_rows; "
                                           f"not a dcgan-features feature file")
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

    def __repr__(self) -> str:
        return f"FeatureFile({str(self.path)!r}, splits={self.splits}, dim={self.dim})"

    @property
    def dtype(self) -> str:
        """Storage dtype of the features (``float16`` or ``float32``)."""
        return str(self._f[self.splits[0]]["features"].dtype) if self.splits else "float16"

    def file_meta(self) -> FileMeta:
        m = self.meta
        return FileMeta(m["dataset"], m["architecture"], int(m.get("width", 0)), tuple(m["layers"]),
                        tuple(m["layer_dims"]), int(m["grid"]), m["bn_mode"], m["checkpoint_sha256"], self.dtype)

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

    def _group(self, split: str) -> h5py.Group:
        if split not in self.splits:
            raise FeatureFileError(f"{str(self.path)!r} has no split {split!r} (has: {', '.join(self.splits) or 'none'})")
        return self._f[split]

    def labels(self, split: str) -> np.ndarray:
        self.require(split)
        return np.asarray(self._f[split]["labels"][...], dtype=np.int64)

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


# -------------------------------------------------------------------------- writer


class FeatureWriter:
    """Create (or resume) ``<path>.partial``, take rows, move it onto ``path`` when whole.

    ``splits`` maps split name -> (labels, indices), which fixes each split's row count.
    After :meth:`open` (or entering the ``with`` block), :attr:`state` is ``"done"`` (a
    complete matching file is already at ``path``: nothing to write), ``"new"`` or
    ``"resume"``, and :meth:`committed` gives the rows already safely on disk per split.
    A file or partial file made with other settings is refused unless ``overwrite``.
    ``resume_key`` (e.g. the batch size) must also match for a partial file to be resumed.
    """

    def __init__(self, path: str | os.PathLike, meta: FileMeta, splits: Mapping[str, tuple],
                 resume_key: Mapping | None = None, overwrite: bool = False, log=None):
        if meta.dtype not in DTYPES:
            raise FeatureFileError(f"feature dtype must be one of {', '.join(DTYPES)}, got {meta.dtype!r}")
        self.path, self.partial = Path(path), partial_path(path)
        self.meta = meta
        self.splits = {s: (np.asarray(l, np.int64), np.asarray(i, np.int64)) for s, (l, i) in splits.items()}
        self.resume_key = json.dumps(dict(resume_key or {}), sort_keys=True)
        self.overwrite = overwrite
        self.log = log or (lambda msg: None)
        self.state: str | None = None
        self._f: h5py.File | None = None
        self._dsets: dict[str, h5py.Dataset] = {}
        self._staged: dict[str, tuple[int, np.ndarray]] = {}  # split -> (first row, rows of an open chunk)
        self._saved: dict[str, int] = {}  # split -> rows written to the file (not yet committed)

    # (1) decide: nothing to do, resume the partial file, or start a new one
    def open(self) -> "FeatureWriter":
        check_writable_dir(self.path.parent if str(self.path.parent) else ".")
        if self.path.exists() and not self.overwrite:
            why = self._mismatch(self.path, final=True)
            if why is None:
                self.state = "done"
                return self
            raise FeatureFileError(f"{str(self.path)!r} exists and {why}; pass --overwrite to replace it "
                                   f"or choose another --out")
        if self.partial.exists() and not self.overwrite:
            try:
                why = self._mismatch(self.partial, final=False)
            except FeatureFileError:
                self.log(f"{self.partial} is unreadable (killed while writing?); starting over")
                why = "restart"
            if why is None:
                self._f = self._open_partial()
                self.state = "resume"
                self._check_space()
                return self
            if why != "restart":
                raise FeatureFileError(f"an unfinished extraction at {str(self.partial)!r} {why}; pass "
                                       f"--overwrite to discard it, or repeat its own command to finish it")
        self._check_space()
        self._create()
        self._f = self._open_partial()
        self.state = "new"
        return self

    def _check_space(self) -> None:
        """Refuse up front when the rows still to write cannot fit on the disk."""
        row = self.meta.dim * np.dtype(self.meta.dtype).itemsize
        todo = sum((len(l) - (self.committed(s) if self._f is not None else 0)) * row + 16 * len(l)
                   for s, (l, _) in self.splits.items())
        need = todo + (1 << 20)  # + HDF5 metadata
        free = shutil.disk_usage(self.path.parent if str(self.path.parent) else ".").free
        if need > free:
            self.close()
            raise FeatureFileError(f"not enough disk space for {str(self.path)!r}: the features need "
                                   f"{_size(need)} more, {_size(free)} is free there; free space or choose "
                                   f"another --out")

    def _open_partial(self) -> h5py.File:
        # no chunk cache: whole-chunk writes go straight to disk and fail (disk full) right there
        return h5py.File(self.partial, "r+", rdcc_nbytes=0)

    def _mismatch(self, path: Path, final: bool) -> str | None:
        with FeatureFile(path) as ff:
            diffs = ff.file_meta().differences(self.meta)
            sizes = {s: ff.n_rows(s) for s in ff.splits}
            asked = {s: len(l) for s, (l, _) in self.splits.items()}
            if sizes != asked:
                diffs.append(f"splits {_fmt(tuple(f'{k}:{v}' for k, v in sizes.items()))} "
                             f"(asked {_fmt(tuple(f'{k}:{v}' for k, v in asked.items()))})")
            if diffs:
                return "was made with " + "; ".join(diffs)
            if final:
                if not all(ff.is_complete(s) for s in ff.splits):
                    return "is incomplete"
                return None
            res = ff._f.get(RESUME)
            if res is None or _decode(res.attrs.get("key", "")) != self.resume_key:
                key = _decode(res.attrs.get("key", "")) if res is not None else "?"
                return f"was started with other run settings {key} (asked {self.resume_key})"
        return None

    def _create(self) -> None:
        """Write a fully initialised partial file under a temp name, then move it into place."""
        itemsize = np.dtype(self.meta.dtype).itemsize
        with atomic_path(self.partial) as tmp:
            with h5py.File(tmp, "w", track_order=True) as f:
                f.attrs.update(self.meta.attrs())
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                res = f.create_group(RESUME)
                res.attrs["key"] = self.resume_key
                for name, (labels, indices) in self.splits.items():
                    n = len(labels)
                    g = f.create_group(name)
                    g.attrs["n_rows"] = n
                    g.attrs["complete"] = False
                    res.attrs[f"committed/{name}"] = 0
                    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                    # chunks allocated now, never filled: later row writes touch no metadata
                    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                    g.create_dataset("features", (n, self.meta.dim), dtype=self.meta.dtype, dcpl=dcpl,
                                     chunks=(chunk_rows(self.meta.dim, itemsize, n), self.meta.dim) if n else None)
                    g.create_dataset("labels", data=labels)
                    g.create_dataset("indices", data=indices)

    # (2) rows, commits, BN statistics
    def committed(self, split: str) -> int:
        if self.state == "done":
            return len(self.splits[split][0])
        return int(self._f[RESUME].attrs[f"committed/{split}"])

    def is_complete(self, split: str) -> bool:
        return self.state == "done" or bool(self._f[split].attrs["complete"])

    def _features(self, split: str) -> h5py.Dataset:
        # kept open: a dataset object freed by the garbage collector flushes inside
        # h5py's __dealloc__, where a write error (disk full) would be printed and lost
        if split not in self._dsets:
            self._dsets[split] = self._f[split]["features"]
        return self._dsets[split]

    def write(self, split: str, lo: int, rows: np.ndarray) -> None:
        """Take rows ``[lo, lo + len(rows))``, in order. Whole chunks go to disk at once; the
        rows of an unfinished chunk wait in memory for the next call (or :meth:`complete`).
        Rows count as saved once :meth:`commit` has run after them.
        """
        ds = self._features(split)
        cr, n = ds.chunks[0], ds.shape[0]
        if split in self._staged:  # first finish the chunk the previous call left open
            s0, buf = self._staged.pop(split)
            if s0 + len(buf) != lo:
                raise ValueError(f"rows of {split!r} must come in order: expected row {s0 + len(buf)}, got {lo}")
            take = min(len(rows), (s0 // cr + 1) * cr - lo)
            buf = np.concatenate([buf, rows[:take]])
            rows, lo = rows[take:], lo + take
            if s0 + len(buf) < min(n, (s0 // cr + 1) * cr):
                self._staged[split] = (s0, buf)
                return
            ds[s0:s0 + len(buf)] = buf
            self._saved[split] = s0 + len(buf)
        else:
            self._saved.setdefault(split, lo)
        if len(rows) and lo % cr:  # a resumed run may start inside a chunk
            take = min(len(rows), (lo // cr + 1) * cr - lo)
            self._staged[split] = (lo, np.array(rows[:take]))
            return self.write(split, lo + take, rows[take:]) if take < len(rows) else None
        whole = len(rows) if lo + len(rows) == n else (len(rows) // cr) * cr
        if whole:
            ds[lo:lo + whole] = rows[:whole]  # whole chunks straight from the caller's buffer
            self._saved[split] = lo + whole
        if whole < len(rows):
            self._staged[split] = (lo + whole, np.array(rows[whole:]))

    def commit(self, split: str) -> int:
        """Flush, then record how many leading rows of ``split`` are safely on disk; return it."""
        saved = self._saved.get(split, self.committed(split))
        self._f.flush()
        self._f[RESUME].attrs[f"committed/{split}"] = int(saved)
        self._f.flush()
        return saved

    def complete(self, split: str) -> None:
        """Write the last partial chunk and mark the split complete."""
        if split in self._staged:
            s0, buf = self._staged.pop(split)
            self._features(split)[s0:s0 + len(buf)] = buf
            self._saved[split] = s0 + len(buf)
        if self.commit(split) != len(self.splits[split][0]):
            raise RuntimeError(f"split {split!r} completed with rows missing")
        self._f[split].attrs["complete"] = True
        self._f.flush()

    def saved_state(self, name: str) -> dict[str, torch.Tensor] | None:
        """Tensors stored by :meth:`save_state` in this partial file, or None."""
        g = self._f[RESUME].get(name) if self._f is not None else None
        return None if g is None else {k: torch.from_numpy(v[...]) for k, v in g.items()}

    def save_state(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        """Keep tensors (e.g. re-estimated BN statistics) so a resumed run reuses them exactly."""
        g = self._f[RESUME].create_group(name)
        for k, v in tensors.items():
            g.create_dataset(k, data=v.detach().cpu().numpy())
        self._f.flush()

    # (3) finish: drop the resume group, close, move onto the final name
    def finish(self) -> Path:
        if self.state == "done":
            return self.path
        for name in self.splits:
            if not self._f[name].attrs["complete"]:
                raise RuntimeError(f"split {name!r} is not complete")
        del self._f[RESUME]
        self._dsets = {}
        self._f.flush()
        self._f.close()
        self._f = None
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing (the partial file stays, for a resume)."""
        self._dsets, self._staged = {}, {}
        if self._f is not None:
            try:
                self._f.close()
            except Exception:  # noqa: BLE001 - closing after a failed write (disk full) may fail again
                pass
            self._f = None

    def __enter__(self) -> "FeatureWriter":
        return self.open()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and self.state != "done" and self._f is not None:
            self.finish()
        self.close()
