"""Guided backpropagation (Springenberg et al. 2014) and running a model up to one of its modules.

Through each rectifier the gradient passes only where both the forward input and the
backward gradient are positive: ``g_in = g_out * [x > 0] * [g_out > 0]``. A LeakyReLU is
treated as the rectifier it approximates: its negative-slope part passes nothing (the
0.2 leak would carry back exactly the negative evidence the rule removes, and would make
the maps of a LeakyReLU D not comparable with those of a ReLU one).

The rule is installed by forward hooks on the rectifier modules (``nn.ReLU``,
``nn.LeakyReLU``), which also works for in-place ones: the hook wraps the output in an
autograd function whose backward applies the mask; the rectifier's own backward then
multiplies by 1 where the output is positive. Functional rectifiers (``F.relu`` in a
``forward``) are not seen; the hooked count is returned so callers can say so.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.LeakyReLU(0.2), nn.Linear(2, 1, bias=False))
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.tensor([[1., 0.], [0., 1.]]))
...     _ = net[2].weight.copy_(torch.tensor([[1., -1.]]))
>>> x = torch.tensor([[1., 2.]], requires_grad=True)
>>> with guided(net):
...     net(x).sum().backward()
>>> x.grad  # unit 2 gets a negative gradient: blocked; unit 1 passes
tensor([[1., 0.]])
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..core.errors import UserError

RECTIFIERS = (nn.ReLU, nn.LeakyReLU)


class _GuidedMask(torch.autograd.Function):
    """Identity forward; backward keeps the gradient where output > 0 and gradient > 0."""

    @staticmethod
    def forward(ctx, out: torch.Tensor) -> torch.Tensor:
        ctx.positive = out > 0  # after a rectifier, output > 0 exactly where its input > 0
        return out.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * ctx.positive * (grad > 0)


def _guided_hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return _GuidedMask.apply(output)


@contextlib.contextmanager
def guided(model: nn.Module) -> Iterator[int]:
    """Guided backpropagation through every rectifier module of ``model`` inside the block;
    yields how many rectifiers were hooked."""
    handles = [m.register_forward_hook(_guided_hook) for m in model.modules() if isinstance(m, RECTIFIERS)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


class _Stop(Exception):
    pass


def find_module(model: nn.Module, name: str, what: str, available: list[str]) -> nn.Module:
    """``model``'s submodule called ``name``; a one-line UserError listing ``available`` if none."""
    mods = dict(model.named_modules())
    if name not in mods or not name:
        raise UserError(f"{what} has no layer {name!r}; available: {', '.join(available)}")
    return mods[name]


def run_to(model: nn.Module, module: nn.Module, x: torch.Tensor, forward=None) -> torch.Tensor:
    """The output of ``module`` when ``model`` (or ``forward``) runs on ``x``; the rest of the
    forward is skipped."""
    got: list[torch.Tensor] = []

    def hook(m, inputs, output):
        got.append(output)
        raise _Stop

    h = module.register_forward_hook(hook)
    try:
        (forward or model)(x)
    except _Stop:
        pass
    finally:
        h.remove()
    if not got:
        raise UserError("the chosen layer is not called by the model's forward")
    return got[0]


def spatial_shape(model: nn.Module, module: nn.Module, x: torch.Tensor, label: str) -> tuple[int, int, int]:
    """(channels, height, width) of ``module``'s output on ``x``; a UserError when it is no 4-d map."""
    with torch.no_grad():
        out = run_to(model, module, x)
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        shape = "x".join(map(str, out.shape[1:])) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{label} has no spatial maps (its output is {shape}); choose a conv layer")
    return tuple(out.shape[1:])  # type: ignore[return-value]


def guided_gradients(model: nn.Module, module: nn.Module, x: torch.Tensor, channels: torch.Tensor,
                     ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Guided-backprop map of response ``(channels[b], ys[b], xs[b])`` of ``module`` for each
    image ``x[b]``: (B, C, H, W). The model must be in eval mode so images do not interact."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad(), guided(model):
        out = run_to(model, module, x)
        b = torch.arange(len(x), device=x.device)
        out[b, channels, ys, xs].sum().backward()
    return x.grad.detach()
