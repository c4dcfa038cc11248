"""Guided backpropagation against a hand-computed case; receptive fields against conv arithmetic."""

import pytest
import torch
from torch import nn

from dcgan_features.look.guided import guided_gradients
from dcgan_features.look.receptive import RF
from dcgan_features.nets.architectures import build


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_matches_the_hand_computed_case(inplace):
    # x = (1, -2) as two 1x1 channels; h = W1 x = (-1, 4, 1); LeakyReLU(0.2) -> (-0.2, 4, 1)
    # o = W2 a = -0.2 + 4 - 1 = 2.8 > 0 -> ReLU passes; response = o.
    # guided: g_a = W2^T 1 = (1, 1, -1); kept where h > 0 and g_a > 0 -> (0, 1, 0); g_x = W1^T (0, 1, 0) = (2, -1)
    # plain backprop: (0.2, 1, -1) -> (1.2, -0.8); forward mask only: (0, 1, -1) -> (1, -1);
    # gradient sign only (the leak passing): (0.2, 1, 0) -> (2.2, -0.8)
    net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.LeakyReLU(0.2, inplace=inplace),
                        nn.Conv2d(3, 1, 1, bias=False), nn.ReLU(inplace=inplace))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1., 1.], [2., -1.], [1., 0.]]).reshape(3, 2, 1, 1))
        net[2].weight.copy_(torch.tensor([[1., 1., -1.]]).reshape(1, 3, 1, 1))
    x = torch.tensor([1., -2.]).reshape(1, 2, 1, 1)
    zero = torch.zeros(1, dtype=torch.long)
    g = guided_gradients(net, net[3], x, zero, zero, zero)
    assert g.flatten().tolist() == [2.0, -1.0]
    # the hooks are gone afterwards: plain backprop again
    x2 = x.clone().requires_grad_(True)
    net(x2).sum().backward()
    assert torch.allclose(x2.grad.flatten(), torch.tensor([1.2, -0.8]))


def test_a_negative_response_sends_nothing_back():
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(-1.0)
    zero = torch.zeros(1, dtype=torch.long)
    g = guided_gradients(net, net[1], torch.ones(1, 1, 1, 1), zero, zero, zero)
    assert g.abs().sum() == 0


def _conv_box(y, x, layers, size):
    """Receptive field by conv arithmetic: each (k, stride, pad) maps [lo, hi] to [lo*s - p, hi*s - p + k - 1]."""
    lo_y = hi_y = y
    lo_x = hi_x = x
    for k, s, p in reversed(layers):
        lo_y, hi_y = lo_y * s - p, hi_y * s - p + k - 1
        lo_x, hi_x = lo_x * s - p, hi_x * s - p + k - 1
    clip = lambda v: min(max(v, 0), size - 1)  # noqa: E731
    return clip(lo_y), clip(lo_x), clip(hi_y), clip(hi_x)


@pytest.mark.parametrize("block,depth", [("d1", 1), ("d2", 2), ("d3", 3)])
def test_receptive_fields_match_conv_arithmetic(block, depth):
    _, D = build("svhn32", width=2, seed=0)  # 5x5 convs, stride 2, padding 2
    D.eval()
    rf = RF(D, D.blocks[block], (3, 32, 32))
    size = 32 >> depth
    for y, x in [(0, 0), (1, 2), (size - 1, size // 2)]:
        assert rf.box(y, x) == _conv_box(y, x, [(5, 2, 2)] * depth, 32), (block, y, x)
