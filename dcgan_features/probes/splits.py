"""Row sets that the generic protocol and the fold protocol draw: a stratified validation share,
a fraction of each class, and the fingerprint a record keeps of the rows it used.

>>> y = np.repeat(np.arange(3), [10, 20, 5])
>>> val, pool = stratified_validation(y, 0.1, 10000, 3, seed=0)
>>> np.bincount(y[val]).tolist(), len(pool)
([1, 2, 1], 31)
>>> np.bincount(y[draw_fraction(y, pool, 0.5, 3, seed=0, draw=0)]).tolist()
[5, 10, 2]
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..core.errors import UserError


def _class_name(c: int, classes) -> str:
    return f"{c} ({classes[c]!r})" if classes and c < len(classes) else str(c)


def stratified_validation(labels: np.ndarray, fraction: float, at_most: int, n_classes: int, seed: int,
                          split: str = "train", classes=None) -> tuple[np.ndarray, np.ndarray]:
    """``fraction`` of each class's labelled rows (rounded, at least one), the total capped at
    ``at_most`` by lowering the fraction; returns the validation rows and the other labelled rows, sorted.

    A class with fewer than two rows cannot give one to validation and keep one to fit: refused, named.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    frac = min(fraction, at_most / max(1, counts.sum()))
    rng = np.random.default_rng([seed, 0])
    val = []
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            raise UserError(f"split {split!r} has {len(rows)} row(s) of class {_class_name(c, classes)}; the protocol "
                            f"holds at least one of each class out for validation and fits on the rest: it needs 2")
        k = min(max(1, int(round(len(rows) * frac))), len(rows) - 1)
        val.append(rng.choice(rows, k, replace=False))
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return val, np.setdiff1d(np.flatnonzero(labels >= 0), val)


def fraction_counts(labels: np.ndarray, fraction: float, n_classes: int) -> np.ndarray:
    """Rows per class of a ``fraction`` draw: that share of each class's labelled rows, at least one."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    return np.maximum(1, np.round(counts * fraction).astype(np.int64))


def draw_fraction(labels: np.ndarray, pool: np.ndarray, fraction: float, n_classes: int, seed: int, draw: int,
                  stream: int = 1, split: str = "train") -> np.ndarray:
    """A seeded draw of ``fraction`` of every class's labelled rows (counted over the whole split,
    as the SimCLR/BYOL subsets are shares of all of ImageNet's train images), taken from ``pool``; sorted."""
    labels = np.asarray(labels)
    want = fraction_counts(labels, fraction, n_classes)
    rng = np.random.default_rng([seed, stream, draw, 1])
    out = []
    for c in range(n_classes):
        rows = pool[labels[pool] == c]
        if len(rows) < want[c]:
            raise UserError(f"split {split!r} has {len(rows)} labelled rows of class {c} outside validation, fewer "
                            f"than the {want[c]} ({fraction:.0%} of the class) the protocol draws")
        out.append(rng.choice(rows, want[c], replace=False))
    return np.sort(np.concatenate(out))


def rows_fingerprint(rows: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of the sorted int64 rows: which rows, in a record."""
    return hashlib.sha256(np.sort(np.asarray(rows, np.int64)).tobytes()).hexdigest()[:16]
