"""Choosing C on validation rows, and widening the grid when the choice sits on its edge.

A C chosen at the first or last value of its grid says only that the best C may lie
beyond it. :func:`search_C` then adds one decade in that direction (``C / 10`` below,
``C * 10`` above) and chooses again, at most ``max_extend`` times, and reports the grid it
actually searched and whether the choice still sits on an edge (``at_edge``). A grid of a
single value is the user fixing C: it is never widened. The scores are always validation
scores: test rows never reach this function.

>>> acc = {1e-3: 0.80, 1e-2: 0.85, 1e-1: 0.90, 1.0: 0.92, 10.0: 0.91}
>>> s = search_C([1e-3, 1e-2, 1e-1], lambda Cs: [acc[c] for c in Cs], max_extend=2)
>>> s.grid, s.C, s.at_edge, s.extended
([0.001, 0.01, 0.1, 1.0, 10.0], 1.0, False, 2)
>>> s = search_C([1e-2, 1e-1], lambda Cs: [min(c, 5.0) for c in Cs], max_extend=2)  # still rising at 10
>>> s.grid, s.C, s.at_edge
([0.01, 0.1, 1.0, 10.0], 10.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .linear import MAX_C, MIN_C


def pick(val_acc: np.ndarray) -> int:
    """Index of the best validation accuracy; ties go to the smaller C (the grid ascends)."""
    val_acc = np.asarray(val_acc, dtype=float)
    return int(np.flatnonzero(val_acc >= val_acc.max() - 1e-12)[0])


@dataclass
class CSearch:
    """The outcome of choosing C: the searched grid (ascending), each C's validation score, the choice."""

    grid: list[float]
    val_acc: np.ndarray
    best: int
    extended: int  # decades added beyond the grid asked for
    at_edge: bool  # the choice is still the first or last value of the searched grid

    @property
    def C(self) -> float:
        return self.grid[self.best]

    def record(self) -> dict:
        """The fields every probe record carries about its C."""
        return {"c_grid": [float(c) for c in self.grid], "c_extended": self.extended, "c_at_edge": self.at_edge}


def search_C(grid: Sequence[float], evaluate: Callable[[list[float]], Sequence[float]], max_extend: int = 2,
             say: Callable[[str], None] | None = None) -> CSearch:
    """Choose C by ``evaluate(Cs) -> validation accuracy of each C``, widening the grid at its edges.

    ``evaluate`` is called once on the whole grid, then once per added decade with one C.
    """
    Cs = sorted(float(c) for c in grid)
    acc = [float(a) for a in evaluate(Cs)]
    extended = 0
    while True:
        best = pick(np.array(acc))
        low, high = best == 0, best == len(Cs) - 1
        at_edge = len(Cs) > 1 and (low or high)
        new = Cs[0] / 10 if low else Cs[-1] * 10
        if not at_edge or extended >= max_extend or not MIN_C <= new <= MAX_C:  # float32's range of C: stop
            break
        if say:
            say(f"C={Cs[best]:g} is the {'smallest' if low else 'largest'} value of the grid: "
                f"adding C={new:g} ({extended + 1} of at most {max_extend})")
        a = float(evaluate([new])[0])
        Cs, acc = ([new] + Cs, [a] + acc) if low else (Cs + [new], acc + [a])
        extended += 1
    if at_edge and say:
        say(f"C={Cs[best]:g} is still at the edge of the searched grid {', '.join(f'{c:g}' for c in Cs)}: "
            "the best C may lie beyond it (recorded as c_at_edge)")
    return CSearch(Cs, np.array(acc), best, extended, at_edge)
