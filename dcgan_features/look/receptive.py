"""Receptive fields: which input pixels a position of a layer's output can see.

Measured, not derived from layer arithmetic, so it holds for any module graph: a copy of
the model with every rectifier replaced by the identity is linear (BatchNorm in eval mode
is affine), so the gradient of the output at one position is non-zero exactly on the
pixels that position depends on. Max-pooling still selects one input per window, so the
support of a few random inputs is united. The box is clipped to the image.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 1, 3, 2, 1), nn.ReLU())
>>> RF(net, net[1], (1, 9, 9)).box(2, 1)  # rows 3..5, cols 1..3 (y0, x0, y1, x1 inclusive)
(3, 1, 5, 3)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .guided import RECTIFIERS, run_to


def _linear_copy(model: nn.Module, module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """A deep copy of ``model`` with identities for rectifiers, and the copy of ``module``."""
    target = "__rf_target__"
    module.__dict__[target] = True
    try:
        twin = copy.deepcopy(model)
    finally:
        del module.__dict__[target]
    found = None
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RECTIFIERS):
                ident = nn.Identity()
                if child.__dict__.pop(target, False):
                    ident.__dict__[target] = True
                setattr(parent, name, ident)
    for m in twin.modules():
        if m.__dict__.pop(target, False):
            found = m
    twin.eval().requires_grad_(False)
    return twin, found


class RF:
    """Receptive-field boxes of ``module``'s output positions for inputs of shape ``shape`` (C, H, W)."""

    def __init__(self, model: nn.Module, module: nn.Module, shape: tuple[int, int, int], probes: int = 3,
                 seed: int = 0):
        self.model, self.module = _linear_copy(model, module)
        device = next(model.parameters()).device
        g = torch.Generator().manual_seed(seed)
        self.x = (torch.rand(probes, *shape, generator=g) * 2 - 1).to(device)
        self._boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), inclusive, of output position (y, x)."""
        key = (int(y), int(x))
        if key not in self._boxes:
            inp = self.x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                out = run_to(self.model, self.module, inp)
                out[:, :, key[0], key[1]].sum().backward()
            seen = inp.grad.abs().sum((0, 1)) > 0
            rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
            if len(rows) == 0:  # a dead position (all-zero weights): fall back to the whole image
                self._boxes[key] = (0, 0, seen.shape[0] - 1, seen.shape[1] - 1)
            else:
                self._boxes[key] = (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
        return self._boxes[key]
