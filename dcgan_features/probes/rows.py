"""Row sources: the one way the probe solvers see a feature matrix, whatever holds it.

A solver never indexes a matrix; it asks a source for ``(start, chunk)`` pairs, float32
tensors of whole rows on the solver's device, and makes one pass per request. Two kinds:

- :class:`ArrayRows`: rows held in memory (numpy or torch, float16 or float32, CPU or GPU),
  optionally a subset of them. A float32 matrix already on the solver's device can be handed
  over whole, as a view: no copy, one large matmul per pass. Float16 storage is widened
  chunk by chunk, so a 50000 x 28672 matrix costs 2.9 GB resident, not 5.7 GB.
- :class:`FileRows`: rows of one split of an HDF5 feature file, read from disk on every
  pass, for matrices that do not fit in memory.

:func:`open_split` picks one of the two for a feature-file split. Both check every value
for NaN/inf (once per source) and name the split and row of the first bad one.

>>> import numpy as np
>>> src = ArrayRows(np.arange(12, dtype=np.float32).reshape(4, 3), np.array([0, 1, 0, 1]), chunk_rows=3)
>>> [(s, tuple(x.shape)) for s, x in src.chunks()]
[(0, (3, 3)), (3, (1, 3))]
>>> sub = src.subset([3, 1])
>>> sub.labels.tolist(), next(sub.chunks())[1][:, 0].tolist()
([1, 1], [9.0, 3.0])
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ..core.devices import free_memory, resolve_device
from ..core.errors import FeatureFileError, UserError

# Resident bytes of one float32 chunk handed to a solver: big enough for efficient
# matmuls, small enough that a chunk never matters next to the matrix itself.
CHUNK_BYTES = {"cpu": 64 << 20, "cuda": 1 << 30}


def default_chunk_rows(dim: int, device: torch.device) -> int:
    return max(64, CHUNK_BYTES.get(device.type, CHUNK_BYTES["cpu"]) // (4 * max(dim, 1)))


def _raise_nonfinite(split: str, row_ids: np.ndarray, chunk: torch.Tensor) -> None:
    bad = (~torch.isfinite(chunk)).any(1).nonzero()
    first = int(bad[0, 0])
    col = int((~torch.isfinite(chunk[first])).nonzero()[0, 0])
    raise FeatureFileError(f"non-finite feature value in split {split!r}, row {int(row_ids[first])} "
                           f"(column {col}): {float(chunk[first, col])}; re-extract the features "
                           f"(float16 overflows past 65504: extract with --dtype float32)")


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.type != "cuda" or (a.index or 0) == (b.index or torch.cuda.current_device()))


class ArrayRows:
    """Rows of an in-memory matrix ``X`` (N, d), with labels, optionally a subset ``rows``."""

    def __init__(self, X, labels=None, rows: Sequence[int] | np.ndarray | None = None, split: str = "train",
                 chunk_rows: int | None = None, row_ids: np.ndarray | None = None, _checked: bool = False):
        self.X = X if isinstance(X, torch.Tensor) else torch.from_numpy(np.asarray(X))
        if self.X.ndim != 2:
            raise UserError(f"features of split {split!r} must be a 2-D matrix, got shape {tuple(self.X.shape)}")
        if not self.X.is_floating_point():
            self.X = self.X.float()
        n = self.X.shape[0]
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        all_labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if all_labels.shape != (n,):
            raise UserError(f"split {split!r} has {n} feature rows but {all_labels.shape[0]} labels")
        self.all_labels = all_labels
        self.labels = all_labels if self.rows is None else all_labels[self.rows]
        self.split = split
        self.row_ids = np.arange(n, dtype=np.int64) if row_ids is None else row_ids
        self._chunk_rows = chunk_rows
        self._checked = _checked

    @property
    def n_rows(self) -> int:
        return self.X.shape[0] if self.rows is None else len(self.rows)

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    def is_float32_on(self, device: torch.device) -> bool:
        """Whether this source is a whole float32 matrix on ``device`` (usable in place, no copy)."""
        return self.rows is None and self.X.dtype == torch.float32 and _same_device(self.X.device, device)

    def subset(self, rows) -> "ArrayRows":
        """A source over ``rows`` (indices into this source's rows), sharing the matrix."""
        rows = np.asarray(rows, dtype=np.int64)
        base = rows if self.rows is None else self.rows[rows]
        return ArrayRows(self.X, self.all_labels, base, self.split, self._chunk_rows, self.row_ids, self._checked)

    def chunks(self, device: str | torch.device = "cpu", chunk_rows: int | None = None, whole: bool = False
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, float32 (n, d) on device)`` covering this source's rows in order.

        ``whole=True``: when the matrix is float32 on ``device`` already, one chunk that is the
        matrix itself (no copy), for callers that only multiply by it; callers that make
        per-chunk temporaries leave it False and get chunks of bounded size.
        """
        device = torch.device(device)
        step = chunk_rows or self._chunk_rows
        if step is None:
            step = max(1, self.n_rows) if whole and self.is_float32_on(device) else default_chunk_rows(self.dim, device)
        check = not self._checked
        for s in range(0, self.n_rows, step):
            if self.rows is None:
                x = self.X[s:s + step]
                ids = self.row_ids[s:s + step]
            else:
                idx = self.rows[s:s + step]
                x = self.X[torch.from_numpy(idx).to(self.X.device)]
                ids = self.row_ids[idx]
            x = x.to(device=device, dtype=torch.float32, non_blocking=True)
            if check and not bool(torch.isfinite(x).all()):
                _raise_nonfinite(self.split, ids, x)
            yield s, x
        self._checked = True


class FileRows:
    """Rows of one split of an open ``store.FeatureFile``, read from disk on every pass."""

    def __init__(self, ff, split: str, rows=None, chunk_rows: int | None = None):
        self.ff = ff
        self.split = split
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.all_labels = ff.labels(split)
        self.labels = self.all_labels if self.rows is None else self.all_labels[self.rows]
        self._dim = int(ff.dim)
        self._n_all = int(ff.n_rows(split))
        self._chunk_rows = chunk_rows
        self._checked = False

    @property
    def n_rows(self) -> int:
        return self._n_all if self.rows is None else len(self.rows)

    @property
    def dim(self) -> int:
        return self._dim

    def subset(self, rows) -> "FileRows":
        rows = np.asarray(rows, dtype=np.int64)
        sub = FileRows(self.ff, self.split, rows if self.rows is None else self.rows[rows], self._chunk_rows)
        sub._checked = self._checked
        return sub

    def _gather(self, ids: np.ndarray, window: int) -> np.ndarray:
        """Rows ``ids`` as float32, read as contiguous windows of at most ``window`` rows.

        h5py's fancy indexing is far slower than reading the few rows in between.
        """
        order = np.argsort(ids, kind="stable")
        sids = ids[order]
        out = np.empty((len(ids), self._dim), np.float32)
        pos = 0
        while pos < len(sids):
            lo = int(sids[pos])
            hi = min(lo + window, int(sids[-1]) + 1)
            end = int(np.searchsorted(sids, hi))
            out[order[pos:end]] = self.ff.read(self.split, lo, hi, dtype=np.float32)[sids[pos:end] - lo]
            pos = end
        return out

    def chunks(self, device: str | torch.device = "cpu", chunk_rows: int | None = None, whole: bool = False
               ) -> Iterator[tuple[int, torch.Tensor]]:
        device = torch.device(device)  # ``whole`` is ArrayRows's; rows from disk come in chunks
        step = chunk_rows or self._chunk_rows or default_chunk_rows(self.dim, torch.device("cpu"))
        check = not self._checked
        if self.rows is None:  # the store reads the next chunk while the solver works on this one
            for s, x in self.ff.iter_chunks(self.split, device, chunk_rows=step):
                if check and not bool(torch.isfinite(x).all()):
                    _raise_nonfinite(self.split, np.arange(s, s + x.shape[0]), x)
                yield s, x
            self._checked = True
            return
        for s in range(0, self.n_rows, step):
            ids = self.rows[s:s + step]
            block = self._gather(ids, step)
            x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(device)
            if check and not bool(torch.isfinite(x).all()):
                _raise_nonfinite(self.split, ids, x)
            yield s, x
        self._checked = True


def open_split(ff, split: str, device: str | torch.device = "cpu", cache: bool | str = "auto"):
    """A row source over ``split`` of an open FeatureFile: cached in memory when it fits.

    ``cache="auto"`` keeps the split resident when it takes under half the available memory
    (host RAM, or free GPU memory on a GPU): as float32 when that fits (every pass then reads
    the matrix in place), else as float16 (widened chunk by chunk on each pass); when neither
    fits, it streams the split from disk on every pass.
    """
    ff.require(split)
    device = resolve_device(device)
    n, dim = int(ff.n_rows(split)), int(ff.dim)
    free = free_memory(device)
    if cache == "auto":
        cache = 2 * n * dim * 2 < free
    if not cache:
        return FileRows(ff, split)
    dtype = torch.float32 if 2 * n * dim * 4 < free else torch.float16
    X = torch.empty((n, dim), dtype=dtype, device=device)
    stream = FileRows(ff, split)
    for s, x in stream.chunks("cpu"):
        X[s:s + x.shape[0]] = x.to(device=device, dtype=dtype)
        if dtype == torch.float16 and not bool(torch.isfinite(X[s:s + x.shape[0]]).all()):
            _raise_nonfinite(split, np.arange(s, s + x.shape[0]), X[s:s + x.shape[0]].float())
    return ArrayRows(X, ff.labels(split), split=split, _checked=True)



class Standardized:
    """A source whose columns are shifted and scaled: ``(x - mean) * inv_std``, chunk by chunk."""

    def __init__(self, base, mean: torch.Tensor, inv_std: torch.Tensor):
        self.base, self.mean, self.inv_std = base, mean, inv_std

    n_rows = property(lambda self: self.base.n_rows)
    dim = property(lambda self: self.base.dim)
    labels = property(lambda self: self.base.labels)
    split = property(lambda self: self.base.split)

    def subset(self, rows) -> "Standardized":
        return Standardized(self.base.subset(rows), self.mean, self.inv_std)

    def chunks(self, device: str | torch.device = "cpu", chunk_rows: int | None = None, whole: bool = False
               ) -> Iterator[tuple[int, torch.Tensor]]:
        device = torch.device(device)  # each chunk is a new tensor: never the whole matrix at once
        mean, inv_std = self.mean.to(device), self.inv_std.to(device)
        for s, x in self.base.chunks(device, chunk_rows):
            yield s, (x - mean) * inv_std


# What a feature recipe does to its features before the linear probe, by the name a feature
# file records (its ``postprocess`` attr): (ddof, eps) of 1 / sqrt(var(ddof) + eps) with the
# train mean. "coates": Coates, Lee & Ng's kmeans_demo.m, ``sqrt(var(trainXC) + 0.01)`` with
# Matlab's var (N - 1), applied to train and test alike.
POSTPROCESS = {"coates": (1, 0.01)}


def standardizer(source, device: str | torch.device = "cpu", ddof: int = 0, eps: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and 1/sqrt(var + eps) over ``source``'s rows (one pass, float64 sums).

    ``var`` divides by N - ``ddof``; a column whose result is ~0 (constant, eps 0) gets 1.
    """
    device = torch.device(device)
    s1 = torch.zeros(source.dim, dtype=torch.float64, device=device)
    s2 = torch.zeros_like(s1)
    for _, x in source.chunks(device):
        xd = x.double()
        s1 += xd.sum(0)
        s2 += (xd * xd).sum(0)
    n = max(source.n_rows, 1)
    mean = s1 / n
    var = (s2 - n * mean * mean).clamp_min(0) / max(n - ddof, 1)
    std = (var + eps).sqrt()
    inv = torch.where(std > 1e-12, 1.0 / std, torch.ones_like(std))
    return mean.float().cpu(), inv.float().cpu()


RowSource = ArrayRows | FileRows | Standardized


def resident(source: RowSource, device: str | torch.device, max_bytes: int) -> RowSource:
    """``source`` as one contiguous float32 matrix on ``device`` when that takes at most
    ``max_bytes``, else ``source`` itself.

    A solver making hundreds of passes over a subset (a protocol's draw), a float16 cache, a
    standardized view or a streamed split then pays the gather, the widening or the disk
    read once instead of on every pass.
    """
    device = torch.device(device)
    if isinstance(source, ArrayRows) and source.is_float32_on(device):
        return source
    if source.n_rows * source.dim * 4 > max_bytes:
        return source
    X = torch.empty((source.n_rows, source.dim), dtype=torch.float32, device=device)
    for s, x in source.chunks(device):  # checks every value on the way, as any first pass does
        X[s:s + x.shape[0]] = x
    ids, sub = getattr(source, "row_ids", None), getattr(source, "rows", None)
    ids = sub if ids is None else (ids if sub is None else ids[sub])  # the split's rows they are, for messages
    return ArrayRows(X, source.labels, split=source.split, row_ids=ids, _checked=True)
