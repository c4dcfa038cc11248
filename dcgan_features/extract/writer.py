"""Writing a feature file: streaming, resumable after kill -9, never a half file under its name.

The schema and the reader are in :mod:`dcgan_features.extract.store`. The writer works on
``<out>.partial`` and moves it onto ``<out>`` only when every split is complete; the
``/_resume`` group of the partial file (deleted before the move) records the rows
committed per split, the run settings that must match for a resume, and saved state
such as re-estimated BN statistics. Rows are written as whole HDF5 chunks with no chunk
cache, so a full disk fails at the write call, as one clear error, not later in h5py's
garbage collection where it would be printed and lost.

>>> import tempfile, os, numpy as np
>>> meta = FileMeta("digits", "dcgan32", 4, ("d1",), (64,), 4, "batch", "0" * 64)
>>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
>>> with FeatureWriter(path, meta, {"test": (np.array([3, 1]), np.arange(2))}) as w:
...     w.write("test", 0, np.ones((2, 64), np.float16)); w.complete("test")
>>> os.path.exists(path), os.path.exists(path + ".partial")
(True, False)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np
import torch

from ..core.atomic import atomic_path, check_regular, check_writable_dir
from ..core.errors import FeatureFileError
from .store import (DTYPES, RESUME, SOURCE, FeatureFile, FileMeta, chunk_rows, decode_attr, format_size, format_value,
                    partial_path)


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
        self._identity: os.stat_result | None = None  # the partial file this writer opened

    # (1) decide: nothing to do, resume the partial file, or start a new one
    def open(self) -> "FeatureWriter":
        check_writable_dir(self.path.parent if str(self.path.parent) else ".")
        if self.partial.is_symlink():  # h5py would write through it into the file it names
            raise FeatureFileError(f"{str(self.partial)!r} is a symbolic link, not a partial file this tool wrote; "
                                   "it is left as it is: remove it, or choose another --out")
        check_regular(self.partial, "partial file")
        if self.path.exists() and not self.overwrite:
            why = self._mismatch(self.path, final=True)
            if why is None:
                self.state = "done"
                return self
            raise FeatureFileError(f"{str(self.path)!r} exists and {why}; pass --overwrite to replace it "
                                   f"or choose another --out")
        if self.partial.exists():
            # a partial file of these very settings is resumed even under --overwrite: it is the
            # overwriting run's own, killed (--overwrite replaces what was made with other settings)
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
            if why != "restart" and not self.overwrite:
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
                                   f"{format_size(need)} more, {format_size(free)} is free there; free space or choose "
                                   f"another --out")

    def _open_partial(self) -> h5py.File:
        # no chunk cache: whole-chunk writes go straight to disk and fail (disk full) right there
        f = h5py.File(self.partial, "r+", rdcc_nbytes=0)
        self._identity = os.stat(self.partial)
        return f

    def _mismatch(self, path: Path, final: bool) -> str | None:
        with FeatureFile(path) as ff:
            diffs = ff.file_meta().differences(self.meta)
            sizes = {s: ff.n_rows(s) for s in ff.splits}
            asked = {s: len(l) for s, (l, _) in self.splits.items()}
            if sizes != asked:
                diffs.append(f"splits {format_value(tuple(f'{k}:{v}' for k, v in sizes.items()))} "
                             f"(asked {format_value(tuple(f'{k}:{v}' for k, v in asked.items()))})")
            if diffs:
                return "was made with " + "; ".join(diffs)
            if final:
                if not all(ff.is_complete(s) for s in ff.splits):
                    return "is incomplete"
                return None
            key = ff.resume_key()
            if key != self.resume_key:
                return f"was started with other run settings {'?' if key is None else key} (asked {self.resume_key})"
        return None

    def _create(self) -> None:
        """Write a fully initialised partial file under a temp name, then move it into place."""
        itemsize = np.dtype(self.meta.dtype).itemsize
        with atomic_path(self.partial) as tmp:
            with h5py.File(tmp, "w", track_order=True) as f:
                f.attrs.update(self.meta.attrs())
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.meta.write_dataset_info(f)
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

    def saved_state(self, name: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        """Tensors and attrs stored by :meth:`save_state` in this partial file, or None."""
        if self._f is None:
            return None
        g = self._f[RESUME].get(name)
        if g is None:
            g = self._f.get(f"{SOURCE}/{name}")
        if g is None:
            return None
        return {k: torch.from_numpy(v[...]) for k, v in g.items()}, {k: decode_attr(v) for k, v in g.attrs.items()}

    def save_state(self, name: str, tensors: Mapping[str, torch.Tensor], attrs: Mapping | None = None,
                   keep: bool = False) -> None:
        """Keep tensors (e.g. re-estimated BN statistics) so a resumed run reuses them exactly.

        ``keep``: they also stay in the finished file, under ``/_source/<name>`` (a fitted
        K-means dictionary that a later extraction reuses); otherwise they go with ``/_resume``.
        """
        parent = self._f.require_group(SOURCE) if keep else self._f[RESUME]
        g = parent.create_group(name)
        for k, v in tensors.items():
            g.create_dataset(k, data=v.detach().cpu().numpy())
        g.attrs.update(dict(attrs or {}))
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
            # only the file this writer filled goes onto the final name, never another's
            if self._identity is None or not os.path.samestat(os.fstat(fh.fileno()), self._identity):
                raise FeatureFileError(f"{str(self.partial)!r} was replaced by another process while this one "
                                       f"wrote it; {str(self.path)!r} was left as it was: run the command again")
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
