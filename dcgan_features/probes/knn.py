"""Weighted k-nearest-neighbour probe on cosine similarity (the kNN monitor of VISSL and solo-learn).

Each test row votes with its ``k`` most similar training rows (cosine similarity ``s``),
each vote weighted ``exp(s / T)``; the class with the largest summed weight wins. The defaults
``k=200, T=0.1`` are this project's own choice (solo-learn's, for comparison, are k=20,
T=0.07). No fitting and no C: a cheap third probe.

Test rows are taken in chunks; for each chunk one pass over the training rows keeps a
running top-k, so neither the (test x train) similarity matrix nor the training matrix
need to fit in memory.

>>> import numpy as np
>>> from dcgan_features.probes.rows import ArrayRows
>>> train = ArrayRows(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32), np.array([0, 0, 1, 1]))
>>> test = ArrayRows(np.array([[1, 0.2], [0.2, 1]], np.float32), np.array([0, 1]))
>>> knn_predict(train, test, k=2, device="cpu").tolist()
[0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.devices import resolve_device


@dataclass(frozen=True)
class KnnConfig:
    k: int = 200
    temperature: float = 0.1
    test_chunk: int = 2048  # test rows per pass over the training rows


def knn_predict(train, test, n_classes: int | None = None, k: int = KnnConfig.k,
                temperature: float = KnnConfig.temperature, device: str | torch.device = "auto",
                test_chunk: int = KnnConfig.test_chunk) -> np.ndarray:
    """(N_test,) predicted class of every test row from the labelled training rows."""
    if k < 1 or temperature <= 0:
        raise UserError(f"kNN needs k >= 1 and temperature > 0, got k={k}, T={temperature}")
    if train.dim != test.dim:
        raise UserError(f"train features have {train.dim} columns but test features {test.dim}")
    dev = resolve_device(device)
    y_train = torch.from_numpy(np.asarray(train.labels, np.int64)).to(dev)
    if y_train.numel() == 0 or int(y_train.min()) < 0:
        raise UserError(f"kNN needs labelled training rows (split {train.split!r} has none or label -1)")
    K = int(y_train.max()) + 1 if n_classes is None else n_classes
    k = min(k, train.n_rows)
    preds = np.empty(test.n_rows, np.int64)
    test_iter = test.chunks(dev, chunk_rows=test_chunk)
    for t0, q in test_iter:
        q = F.normalize(q, dim=1)
        best_s = torch.full((q.shape[0], k), -float("inf"), device=dev)  # (t, k) running top-k
        best_y = torch.zeros((q.shape[0], k), dtype=torch.long, device=dev)
        for s0, x in train.chunks(dev):
            sim = q @ F.normalize(x, dim=1).T  # (t, n)
            cand_s = torch.cat([best_s, sim], 1)
            cand_y = torch.cat([best_y, y_train[s0:s0 + x.shape[0]].expand(q.shape[0], -1)], 1)
            best_s, idx = cand_s.topk(k, dim=1)
            best_y = cand_y.gather(1, idx)
        votes = torch.zeros((q.shape[0], K), device=dev)
        votes.scatter_add_(1, best_y, (best_s / temperature).exp())
        preds[t0:t0 + q.shape[0]] = votes.argmax(1).cpu().numpy()
    return preds


def knn_accuracy(train, test, **kwargs) -> float:
    """Fraction of ``test``'s rows the kNN probe classifies right."""
    return float((knn_predict(train, test, **kwargs) == np.asarray(test.labels)).mean())
