"""The SVHN authors' rows, exactly: their validation split and their label draws.

What is theirs and checked: on a synthetic ``.mat`` label vector, the validation rows and
the draws (the first 11 of C selection, the first 3 measured after all 70) that their own
loop produced under Python 2.7.18 (``tests/probes/reference/svhn_authors_draws.json``,
checked by ``tests/probes/test_authors.py``) are row for row the ones :func:`validation_split` and
:class:`Draws` give, given our labels (digit d is class d) and :data:`SVHN_DRAW_ORDER`.
What is not theirs: the features (ours are extracted by torch, not Theano), the solver
(``--backend sklearn`` is their ``LinearSVC``; torch's stops at the same ``tol``) and the
order of the rows inside a fit (we fit a draw's rows sorted; they fit them in drawn order).

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
  of *their* coding in turn, ``py_rng.sample(positions of the class in the pool, 100)``.
  Their ``load.py`` codes the ``.mat`` file's ``y`` (1..10, 10 meaning digit 0) as ``y - 1``:
  their class 0 is digit 1, ..., class 8 digit 9, class 9 digit 0. Our loader codes digit d
  as class d, so the draws visit our classes in :data:`SVHN_DRAW_ORDER` (1, 2, ..., 9, 0);
  visiting 0..9 instead gives other draws (the first shares 567 of its 1000 rows with theirs). The script ran on
  Python 2, whose ``random.sample`` differs from Python 3's: :func:`py2_sample` is Python
  2.7's algorithm, on the same Mersenne Twister stream (seeding an int and ``random()`` are
  unchanged between the two).
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
>>> Draws(np.array([0, 1] * 4), pool, 1, 2, seed=42, class_order=(1, 0)).next().tolist()  # class 1 first
[3, 2]
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np

from ..core.errors import UserError

AUTHORS_SEED = 42  # lib/rng.py: np_rng = RandomState(42), py_rng = Random(42)
# the order their loop visits our classes (digit d = class d): their y - 1 coding puts digit 0 last
SVHN_DRAW_ORDER = (1, 2, 3, 4, 5, 6, 7, 8, 9, 0)


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
    """The authors' stream of label draws over a pool (rows in the pool's order).

    ``class_order``: the order classes are sampled in (default 0..n_classes-1); SVHN's is
    :data:`SVHN_DRAW_ORDER`.
    """

    def __init__(self, labels: np.ndarray, pool: np.ndarray, per_class: int, n_classes: int,
                 seed: int = AUTHORS_SEED, split: str = "train", class_order: Sequence[int] | None = None):
        pool_labels = np.asarray(labels)[pool]
        order = list(range(n_classes)) if class_order is None else [int(c) for c in class_order]
        if sorted(order) != list(range(n_classes)):
            raise UserError(f"a draw order must name each of the {n_classes} classes once, got {order}")
        self.positions = [np.flatnonzero(pool_labels == c).tolist() for c in order]
        for c, pos in zip(order, self.positions):
            if len(pos) < per_class:
                raise UserError(f"split {split!r} has {len(pos)} rows of class {c} outside validation, fewer than "
                                f"the {per_class} per class the protocol draws; lower --labels-per-class")
        self.pool, self.per_class = np.asarray(pool), per_class
        self.rng = random.Random(seed)

    def next(self) -> np.ndarray:
        """The next draw: rows of the feature split, class by class, in the order drawn."""
        picked = [p for pos in self.positions for p in py2_sample(self.rng, pos, self.per_class)]
        return self.pool[np.asarray(picked, dtype=np.int64)]
