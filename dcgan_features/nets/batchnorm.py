"""D's BatchNorm, able to take statistics per part of the batch: one D pass over cat(real, fake).

The paper's D step runs D twice, once on a batch of real images and once on a batch of
fakes, so every BatchNorm normalises each batch with its own statistics. Running D once
over ``torch.cat([real, fake])`` with :func:`batch_splits` set to 2 computes exactly that:
each half is normalised with its own mean and variance, and the running statistics are
updated twice, real half first, as two passes would update them. The convolutions, the
head and the backward pass then work on one batch twice the size (larger GEMMs, half the
launches), with the same mathematics up to float summation order.

>>> import torch
>>> bn = SplitBatchNorm2d(3)
>>> real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2) + 5
>>> with batch_splits(bn, 2):
...     y = bn(torch.cat([real, fake]))
>>> torch.allclose(y[4:], SplitBatchNorm2d(3)(fake), atol=1e-6)
True
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["SplitBatchNorm2d", "batch_splits"]


class SplitBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are taken over each of ``splits``
    equal parts of the batch. ``splits == 1`` (the default) is ``nn.BatchNorm2d`` itself;
    state dicts are the same, so checkpoints load either way."""

    splits: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.splits == 1 or not (self.training or self.running_mean is None):
            return super().forward(x)
        if x.shape[0] % self.splits:  # a ragged last part would silently change the statistics
            raise ValueError(f"a batch of {x.shape[0]} cannot be split into {self.splits} equal parts")
        # Each part through the native kernel in order: its output and its running-stat
        # update are those of a separate pass over that part alone.
        return torch.cat([super(SplitBatchNorm2d, self).forward(part) for part in x.chunk(self.splits)])


@contextlib.contextmanager
def batch_splits(module: nn.Module, splits: int) -> Iterator[None]:
    """Within the block, every :class:`SplitBatchNorm2d` in ``module`` normalises each of
    ``splits`` equal parts of its batch separately; restored afterwards, also on errors."""
    layers = [m for m in module.modules() if isinstance(m, SplitBatchNorm2d)]
    for m in layers:
        m.splits = splits
    try:
        yield
    finally:
        for m in layers:
            m.splits = 1

