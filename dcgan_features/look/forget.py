"""Making G forget an object (paper Fig. 6): a logistic probe on one G layer finds the feature
maps that draw the object; a forward hook drops them at every spatial location.

The probe's examples are the layer's activation vectors (one per spatial position) of the
boxed samples: positions whose cell centre lies inside a box are positives, as many
random positions outside every box of the same images are negatives. Images, not
positions, are held out to score it, so a held-out accuracy says whether the maps
generalise to new samples. Maps whose weight is > 0 (or the ``drop`` largest) are
dropped: their output is set to zero for every sample and position.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..core.errors import UserError
from .generate import decode

Box = tuple[int, int, int, int]


@dataclass
class Probe:
    """The fitted probe: one weight per map, the maps chosen, and its accuracies."""

    weights: np.ndarray  # (C,)
    dropped: list[int]
    train_accuracy: float
    heldout_accuracy: float
    positives: int
    negatives: int
    heldout_images: list[int]


def capture(G: nn.Module, layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The layer's maps for every z, decoded as :func:`.generate.decode` does (one pass when G
    uses batch statistics, so the maps are those of the numbered grid)."""
    got: list[torch.Tensor] = []
    h = layer.register_forward_hook(lambda m, i, o: got.append(o.detach().float().cpu()))
    try:
        decode(G, z)
    finally:
        h.remove()
    return torch.cat(got)


def inside(shape: tuple[int, int], size: int, boxes: Sequence[Box]) -> torch.Tensor:
    """(h, w) bool: cells of an h x w map whose centre, in image pixels, lies in any box."""
    h, w = shape
    cy = (torch.arange(h) + 0.5) * size / h
    cx = (torch.arange(w) + 0.5) * size / w
    m = torch.zeros(h, w, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        m |= ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    return m


def examples(maps: torch.Tensor, boxes: dict[int, list[Box]], size: int, ids: Sequence[int],
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Activation vectors inside the boxes (label 1) and as many random ones outside (label 0)."""
    X, y = [], []
    for i in ids:
        a = maps[i].flatten(1).t().numpy()  # (h*w, C)
        m = inside(tuple(maps.shape[2:]), size, boxes[i]).flatten().numpy()
        pos, neg = np.flatnonzero(m), np.flatnonzero(~m)
        neg = rng.choice(neg, size=min(len(pos), len(neg)), replace=False) if len(neg) else neg
        X += [a[pos], a[neg]]
        y += [np.ones(len(pos)), np.zeros(len(neg))]
    return np.concatenate(X), np.concatenate(y)


def fit_probe(maps: torch.Tensor, boxes: dict[int, list[Box]], size: int, C: float, holdout: float,
              drop: int | None, seed: int) -> Probe:
    """Fit the logistic probe on the boxed samples' maps and choose the maps to drop."""
    from sklearn.linear_model import LogisticRegression

    ids = list(boxes)
    if len(ids) < 2:
        raise UserError("BOXES needs boxes on at least 2 samples: some are held out to score the probe")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(ids))
    n_out = min(max(1, round(holdout * len(ids))), len(ids) - 1)
    held, fit_ids = sorted(int(i) for i in order[:n_out]), sorted(int(i) for i in order[n_out:])
    X, y = examples(maps, boxes, size, fit_ids, rng)
    Xh, yh = examples(maps, boxes, size, held, rng)
    if y.sum() == 0 or y.sum() == len(y):
        raise UserError("the boxes cover no cell (or every cell) of the layer's maps; draw larger boxes "
                        "or choose a finer --layer")
    clf = LogisticRegression(C=C, max_iter=5000).fit(X, y)
    w = clf.coef_[0]
    dropped = [int(c) for c in np.argsort(-w, kind="stable")[:drop]] if drop is not None \
        else [int(c) for c in np.flatnonzero(w > 0)]
    return Probe(w, sorted(dropped), float(clf.score(X, y)), float(clf.score(Xh, yh)) if len(yh) else float("nan"),
                 int(y.sum() + yh.sum()), int(len(y) - y.sum() + len(yh) - yh.sum()), held)


@contextlib.contextmanager
def dropped(layer: nn.Module, maps: Sequence[int]) -> Iterator[None]:
    """Inside the block, the layer's ``maps`` are zero at every location (a forward hook)."""
    idx = list(maps)

    def hook(module, inputs, output):
        out = output.clone()
        out[:, idx] = 0
        return out

    h = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()


def with_and_without(G: nn.Module, layer: nn.Module, maps: Sequence[int], z: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples of ``z`` as G draws them, and with ``maps`` dropped."""
    before = decode(G, z)
    with dropped(layer, maps):
        after = decode(G, z)
    return before, after
