"""A generator's layers with spatial maps, by name: ``g1, g2, ...`` from the input up.

A layer is a point after an activation where G holds a stack of feature maps: a child of
``G.net`` whose output is 4-d and which is followed by neither a normalisation nor an
activation (so the name means the post-activation maps), the image output excluded. The
last of them is the paper's "second highest convolution layer" (the highest being the one
that paints the image). Any module name of G is accepted too.

>>> from dcgan_features.nets.architectures import build
>>> G, _ = build("svhn32", width=2)
>>> [(name, shape) for name, (_, shape) in g_layers(G).items()]
[('g1', (8, 4, 4)), ('g2', (4, 8, 8)), ('g3', (2, 16, 16))]
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UserError
from .guided import RECTIFIERS, find_module, spatial_shape

_FOLLOWERS = (nn.modules.batchnorm._BatchNorm, *RECTIFIERS, nn.Tanh, nn.Sigmoid)


def _probe_z(G: nn.Module) -> torch.Tensor:
    device = next(G.parameters()).device
    return torch.zeros(2, int(G.nz), device=device)


def g_layers(G: nn.Module) -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    """Name -> (module, (channels, h, w)) of G's layers with spatial maps, input side first."""
    children = list(G.net.children())
    shapes: dict[int, tuple] = {}
    hooks = [c.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape[1:])))
             for k, c in enumerate(children)]
    was = G.training
    try:
        G.eval()
        with torch.no_grad():
            G(_probe_z(G))
    finally:
        G.train(was)
        for h in hooks:
            h.remove()
    layers = {}
    for k, c in enumerate(children[:-1]):
        if len(shapes.get(k, ())) == 3 and not isinstance(children[k + 1], _FOLLOWERS):
            layers[f"g{len(layers) + 1}"] = (c, shapes[k])
    return layers


def g_layer(G: nn.Module, name: str | None) -> tuple[str, nn.Module, tuple[int, int, int]]:
    """The layer ``name`` (default: the last hidden one); a one-line error for a name G lacks or a
    layer without spatial maps."""
    layers = g_layers(G)
    if name is None:
        if not layers:
            raise UserError("G has no layer with spatial maps")
        name = list(layers)[-1]
    if name in layers:
        return name, *layers[name]
    module = find_module(G, name, "G", list(layers))
    was = G.training
    G.eval()
    try:
        shape = spatial_shape(G, module, _probe_z(G), f"G's layer {name!r}")
    finally:
        G.train(was)
    return name, module, shape
