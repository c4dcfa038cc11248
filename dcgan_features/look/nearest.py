"""Nearest training images of query images, streamed over the training set in chunks.

Two spaces: pixels (Euclidean distance between images in [-1, 1]) and D features
(cosine distance, 1 - cos, between feature vectors). Per query only the ``k`` best are
kept while the chunks go by, so the training set is never held as floats. Pixel
distances of the kept neighbours are recomputed exactly from the differences at the end
(the chunked ``|a|^2 + |b|^2 - 2ab`` form loses the digits of near-copies).

>>> import torch
>>> train = torch.tensor([[0., 0.], [3., 4.], [1., 0.]])
>>> s = Search(torch.tensor([[1., 1.]]), k=2)
>>> s.add(train[:2], start=0); s.add(train[2:], start=2)
>>> s.indices.tolist(), [round(v, 3) for v in s.exact(train).flatten().tolist()]
([[2, 0]], [1.0, 1.414])
"""

from __future__ import annotations

import torch


class Search:
    """The ``k`` nearest rows of a streamed set for each query row; ``cosine`` or Euclidean."""

    def __init__(self, queries: torch.Tensor, k: int, cosine: bool = False, exclude: torch.Tensor | None = None):
        self.q = queries.float().flatten(1)
        self.cosine, self.k = cosine, k
        if cosine:
            self.q = torch.nn.functional.normalize(self.q, dim=1)
        self.q_sq = (self.q * self.q).sum(1, keepdim=True)
        self.exclude = exclude  # per query, a row index of the set never returned (the query itself)
        n = len(self.q)
        self.distances = torch.full((n, 0), float("inf"), device=self.q.device)
        self.indices = torch.zeros((n, 0), dtype=torch.long, device=self.q.device)

    def add(self, rows: torch.Tensor, start: int) -> None:
        """Compare the queries with ``rows``, the set's rows ``start, start + 1, ...``."""
        r = rows.float().flatten(1).to(self.q.device)
        if self.cosine:
            d = 1 - self.q @ torch.nn.functional.normalize(r, dim=1).t()
        else:
            d = (self.q_sq + (r * r).sum(1)[None] - 2 * self.q @ r.t()).clamp_min_(0).sqrt_()
        idx = torch.arange(start, start + len(r), device=self.q.device).expand(len(self.q), -1)
        if self.exclude is not None:
            d = d.masked_fill(idx == self.exclude.to(self.q.device)[:, None], float("inf"))
        cand_d = torch.cat([self.distances, d], 1)
        cand_i = torch.cat([self.indices, idx], 1)
        keep = cand_d.topk(min(self.k, cand_d.shape[1]), dim=1, largest=False).indices
        self.distances, self.indices = cand_d.gather(1, keep), cand_i.gather(1, keep)

    def exact(self, rows_of: torch.Tensor | callable) -> torch.Tensor:
        """Exact pixel distances of the kept neighbours; ``rows_of`` is the set (or index -> rows)."""
        get = rows_of if callable(rows_of) else (lambda i: rows_of[i])
        nb = get(self.indices.cpu().flatten()).float().flatten(1).to(self.q.device)
        diff = nb.reshape(*self.indices.shape, -1) - self.q[:, None]
        return diff.square().sum(2).sqrt()
