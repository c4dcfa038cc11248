"""The SVHN authors' rows, exactly: their validation split and their label draws.

The ``svhn`` protocol follows the authors by default (``validation="uniform"``,
``selection="fresh"``, ``ci_ddof=0``, seed 42); :mod:`.protocols` names the departures
that are ours as options.

Re-implemented from reading Newmu/dcgan_code's ``svhn/load.py`` and
``svhn/svhn_semisup_analysis.py`` (no code copied):

- validation: ``sklearn.utils.shuffle`` of the train set with ``numpy.random.RandomState(42)``
  (their ``np_rng``), i.e. the permutation ``RandomState(seed).permutation(n)``; its first
  ``val_size`` rows are validation, the rest (in that shuffled order) the train pool. The
  validation rows are uniform over the train set, so they follow SVHN's class imbalance as
  the test set does.
- label draws: ``random.Random(42)`` (their ``py_rng``); a draw takes, for class 0, 1, ..., 9
  in turn, ``py_rng.sample(positions of the class in the pool, 100)``. The script ran on
  Python 2, whose ``random.sample`` differs from Python 3's: :func:`py2_sample` is Python
  2.7's algorithm, on the same Mersenne Twister stream (seeding an int and ``random()`` are
  unchanged between the two), so the draws are theirs.
- one stream of draws: 10 fresh draws for each C of the grid in order, then the 100 test
  draws at the chosen C.

>>> import random
>>> py2_sample(random.Random(42), list(range(10)), 3)
[6, 0, 2]
>>> val, pool = validation_split(8, 3, seed=42)
>>> val.tolist(), pool.tolist()
([1, 5, 0], [7, 2, 4, 3, 6])
>>> d = Draws(np.array([0, 1] * 4), pool, per_class=1, n_classes=2, seed=42)
>>> d.next().tolist(), d.next().tolist()  # class 0 then class 1; the stream continues
([4, 7], [2, 7])
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np

from ..core.errors import UserError

AUTHORS_SEED = 42  # lib/rng.py: np_rng = RandomState(42), py_rng = Random(42)


def py2_sample(rng: random.Random, population: Sequence, k: int) -> list:
    """Python 2.7's ``random.sample(population, k)`` drawn from ``rng`` (a ``random.Random``)."""
    n = len(population)
    if not 0 <= k <= n:
        raise ValueError("sample larger than population")
    setsize = 21  # Python 2.7's estimate of when a set of picks is smaller than a copied list
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    result = [None] * k
    if n <= setsize:
        pool = list(population)
        for i in range(k):  # invariant: the non-selected are at [0, n - i)
            j = int(rng.random() * (n - i))
            result[i] = pool[j]
            pool[j] = pool[n - i - 1]
    else:
        selected: set[int] = set()
        for i in range(k):
            j = int(rng.random() * n)
            while j in selected:
                j = int(rng.random() * n)
            selected.add(j)
            result[i] = population[j]
    return result


def validation_split(n_rows: int, val_size: int, seed: int = AUTHORS_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Validation rows and the train pool, both in the authors' shuffled order (not sorted)."""
    if not 0 < val_size < n_rows:
        raise UserError(f"--val-size must be between 1 and {n_rows - 1} (the train rows), got {val_size}")
    perm = np.random.RandomState(seed).permutation(n_rows)
    return perm[:val_size], perm[val_size:]


class Draws:
    """The authors' stream of label draws over a pool (rows in the pool's order)."""

    def __init__(self, labels: np.ndarray, pool: np.ndarray, per_class: int, n_classes: int,
                 seed: int = AUTHORS_SEED, split: str = "train"):
        pool_labels = np.asarray(labels)[pool]
        self.positions = [np.flatnonzero(pool_labels == c).tolist() for c in range(n_classes)]
        for c, pos in enumerate(self.positions):
            if len(pos) < per_class:
                raise UserError(f"split {split!r} has {len(pos)} rows of class {c} outside validation, fewer than "
                                f"the {per_class} per class the protocol draws; lower --labels-per-class")
        self.pool, self.per_class = np.asarray(pool), per_class
        self.rng = random.Random(seed)

    def next(self) -> np.ndarray:
        """The next draw: rows of the feature split, class by class, in the order drawn."""
        picked = [p for pos in self.positions for p in py2_sample(self.rng, pos, self.per_class)]
        return self.pool[np.asarray(picked, dtype=np.int64)]
