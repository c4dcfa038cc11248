"""The top-k responses of chosen feature maps over a whole image set, streamed in batches.

A response of map ``c`` to image ``i`` is the maximum of the map over its positions (the
paper's "maximal axis-aligned response"); each image counts once per map, so a map's top
k are k different images. Only ``k`` candidates per map are kept while the batches go by.

>>> import torch
>>> acts = torch.tensor([[[[1., 5.]]], [[[7., 2.]]], [[[3., 0.]]]])  # 3 images, 1 map, 1x2
>>> top = top_responses(lambda x: x, acts, [0], k=2, batch_size=2, to_input=lambda b, d: b)
>>> top.images.tolist(), top.values.tolist(), top.positions.tolist()
([[1, 0]], [[7.0, 5.0]], [[[0, 0], [0, 1]]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class Top:
    """Per chosen map (rows, in the order asked), its top ``k`` responses, largest first."""

    maps: list[int]
    values: torch.Tensor  # (M, k) float
    images: torch.Tensor  # (M, k) int64, index in the image set
    positions: torch.Tensor  # (M, k, 2) int64, (y, x) in the map


@torch.no_grad()
def top_responses(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, maps: Sequence[int],
                  k: int, batch_size: int, to_input: Callable, device: torch.device | str = "cpu") -> Top:
    """Stream ``images`` through ``forward`` (input -> (B, C, H, W) maps) and keep each map's
    top ``k`` images. ``to_input(batch, device)`` turns stored images into model input."""
    M, n = len(maps), len(images)
    idx = torch.as_tensor(list(maps), dtype=torch.long)
    best_v = torch.full((M, 0), float("-inf"))
    best_i = torch.zeros((M, 0), dtype=torch.long)
    best_p = torch.zeros((M, 0), dtype=torch.long)
    width = 1
    for lo in range(0, n, batch_size):
        a = forward(to_input(images[lo:lo + batch_size], device))[:, idx.to(device)].float()  # (B, M, H, W)
        width = a.shape[3]
        v, p = a.flatten(2).max(2)  # (B, M): each image's best position per map
        cand_v = torch.cat([best_v, v.t().cpu()], 1)
        cand_i = torch.cat([best_i, torch.arange(lo, lo + len(v)).expand(M, -1)], 1)
        cand_p = torch.cat([best_p, p.t().cpu()], 1)
        keep = _order(cand_v, cand_i)[:, :k]
        best_v, best_i, best_p = (t.gather(1, keep) for t in (cand_v, cand_i, cand_p))
    pos = torch.stack([best_p // width, best_p % width], 2)
    return Top(list(maps), best_v, best_i, pos)


def _order(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Columns by value, largest first; equal values by image index, smallest first (so the
    result does not depend on the batch size)."""
    by_index = index.argsort(dim=1, stable=True)
    v = values.gather(1, by_index)
    return by_index.gather(1, v.argsort(dim=1, descending=True, stable=True))
