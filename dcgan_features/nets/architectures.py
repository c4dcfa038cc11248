"""The four DCGAN architectures of DESIGN section 2, with feature metadata beside the layers.

Each discriminator is a stack of named conv blocks ``d1, d2, ...`` (conv [+ BN] +
LeakyReLU(0.2)) followed by a real/fake ``head`` that is not a feature. The metadata of
every block (name, channels, spatial size, pooled dim) is declared where the block is
built, as ``D.feature_info``, and tests check it against real forward passes.

>>> G, D = build("imagenet32", width=8)
>>> [(f.name, f.channels, f.spatial) for f in D.feature_info][:2]
[('d1', 8, 32), ('d2', 8, 16)]
>>> feature_dim("imagenet32")        # at the default width, 128
28672
>>> z = sample_z(get_arch("imagenet32"), 2)
>>> D(G(z)).shape
torch.Size([2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .batchnorm import SplitBatchNorm2d
from ..core.errors import UserError


@dataclass(frozen=True)
class FeatureInfo:
    """One D block's post-activation output: ``channels x spatial x spatial``."""

    name: str
    channels: int
    spatial: int

    def pooled_dim(self, grid: int = 4) -> int:
        """Length of this block's feature after max-pooling to ``grid x grid``."""
        return self.channels * grid * grid


# --------------------------------------------------------------------------- blocks


def _d_block(cin: int, cout: int, k: int, stride: int, pad: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, bias=False)]
    if bn:
        layers.append(SplitBatchNorm2d(cout))  # per-half statistics in the joint D pass
    # inplace saves one activation-sized buffer per block; features.py pools inside its
    # hook, so nothing downstream can see a captured tensor change.
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _g_block(cin: int, cout: int, k: int, stride: int, pad: int, out_pad: int, last: bool) -> nn.Sequential:
    conv = nn.ConvTranspose2d(cin, cout, k, stride, pad, output_padding=out_pad, bias=False)
    if last:
        return nn.Sequential(conv, nn.Tanh())
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Discriminator(nn.Module):
    """Named conv blocks ``d1..dN`` (the features) and a ``head`` giving one logit per image."""

    def __init__(self, blocks: Sequence[nn.Module], feature_info: Sequence[FeatureInfo], head: nn.Module):
        super().__init__()
        if len(blocks) != len(feature_info):
            raise ValueError("one FeatureInfo per block")
        self.blocks = nn.ModuleDict({fi.name: b for fi, b in zip(feature_info, blocks)})
        self.head = head
        self.feature_info: list[FeatureInfo] = list(feature_info)

    @property
    def block_names(self) -> list[str]:
        return [fi.name for fi in self.feature_info]

    def feature_dim(self, grid: int = 4, layers: Sequence[str] | None = None) -> int:
        names = set(layers) if layers is not None else None
        return sum(fi.pooled_dim(grid) for fi in self.feature_info if names is None or fi.name in names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return self.head(x).reshape(-1)


class Generator(nn.Module):
    """Maps z of shape (N, nz) to images in [-1, 1] of shape (N, 3, S, S)."""

    def __init__(self, net: nn.Sequential, nz: int, z_as_image: bool):
        super().__init__()
        self.net = net
        self.nz = nz
        # DCGAN-style G's start with a transposed conv and take z as (N, nz, 1, 1).
        self.z_as_image = z_as_image

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.z_as_image:
            z = z.reshape(z.shape[0], self.nz, 1, 1)
        return self.net(z)


# --------------------------------------------------------------------- architectures


def _imagenet32(width: int, nz: int) -> tuple[Generator, Discriminator]:
    w = width  # 128 in the paper's CIFAR-10 model
    chans = [w, w, 2 * w, 2 * w, 4 * w, 4 * w]
    strides = [1, 2, 1, 2, 1, 2]
    blocks, info, cin, size = [], [], 3, 32
    for i, (c, s) in enumerate(zip(chans, strides)):
        blocks.append(_d_block(cin, c, 3, s, 1, bn=i > 0))
        size //= s
        info.append(FeatureInfo(f"d{i + 1}", c, size))  # w@32, w@16, 2w@16, 2w@8, 4w@8, 4w@4
        cin = c
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 1, bias=False))  # (4w*4*4) -> 1
    D = Discriminator(blocks, info, head)

    g = [
        nn.Linear(nz, 4 * w * 16, bias=False),
        nn.BatchNorm1d(4 * w * 16),  # per unit, as the released weights
        nn.ReLU(inplace=True),
        Reshape(4 * w, 4, 4),  # (4w) x 4 x 4
    ]
    g_chans = [4 * w, 4 * w, 2 * w, 2 * w, w, w, 3]  # -> 4w@8, 2w@8, 2w@16, w@16, w@32, 3@32
    for i, s in enumerate([2, 1, 2, 1, 2, 1]):
        g.append(_g_block(g_chans[i], g_chans[i + 1], 3, s, 1, s - 1, last=i == 5))
    return Generator(nn.Sequential(*g), nz, z_as_image=False), D


def _svhn32(width: int, nz: int) -> tuple[Generator, Discriminator]:
    w = width  # 64 in the released SVHN model
    blocks, info, cin, size = [], [], 3, 32
    for i, c in enumerate([w, 2 * w, 4 * w]):
        blocks.append(_d_block(cin, c, 5, 2, 2, bn=i > 0))
        size //= 2
        info.append(FeatureInfo(f"d{i + 1}", c, size))  # w@16, 2w@8, 4w@4
        cin = c
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 1, bias=False))  # (4w*4*4) -> 1
    D = Discriminator(blocks, info, head)

    g = [
        nn.Linear(nz, 4 * w * 16, bias=False),
        nn.BatchNorm1d(4 * w * 16),
        nn.ReLU(inplace=True),
        Reshape(4 * w, 4, 4),  # (4w) x 4 x 4
        _g_block(4 * w, 2 * w, 5, 2, 2, 1, last=False),  # (2w) x 8 x 8
        _g_block(2 * w, w, 5, 2, 2, 1, last=False),  # w x 16 x 16
        _g_block(w, 3, 5, 2, 2, 1, last=True),  # 3 x 32 x 32
    ]
    return Generator(nn.Sequential(*g), nz, z_as_image=False), D


def _pytorch_examples(width: int, nz: int, image_size: int) -> tuple[Generator, Discriminator]:
    """The pytorch/examples dcgan: 4x4 stride-2 convs, widths w, 2w, ... down to 4x4."""
    n_blocks = int(math.log2(image_size)) - 2  # 32 -> 3 blocks, 64 -> 4 blocks
    chans = [width * 2**i for i in range(n_blocks)]
    blocks, info, cin, size = [], [], 3, image_size
    for i, c in enumerate(chans):
        blocks.append(_d_block(cin, c, 4, 2, 1, bn=i > 0))
        size //= 2
        info.append(FeatureInfo(f"d{i + 1}", c, size))
        cin = c
    head = nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False)  # (w*2^(n-1)) x 4 x 4 -> 1 x 1 x 1
    D = Discriminator(blocks, info, head)

    rev = chans[::-1]
    g: list[nn.Module] = [
        nn.ConvTranspose2d(nz, rev[0], 4, 1, 0, bias=False),  # (w*2^(n-1)) x 4 x 4
        nn.BatchNorm2d(rev[0]),
        nn.ReLU(inplace=True),
    ]
    for i in range(n_blocks):  # each doubles the spatial size
        cout = rev[i + 1] if i + 1 < n_blocks else 3
        g.append(_g_block(rev[i], cout, 4, 2, 1, 0, last=i + 1 == n_blocks))
    return Generator(nn.Sequential(*g), nz, z_as_image=True), D


@dataclass(frozen=True)
class ArchSpec:
    """What a caller needs to know about an architecture before building it."""

    name: str
    image_size: int
    nz: int
    prior: str  # "uniform" on (-1, 1) or "normal"
    default_width: int
    description: str
    _build: Callable[[int, int], tuple[Generator, Discriminator]]
    theano_release: bool = False  # the authors released Theano weights in this layout (import-theano)

    def build(self, width: int | None = None, nz: int | None = None, init: bool = True,
              seed: int | None = None) -> tuple[Generator, Discriminator]:
        width = self.default_width if width is None else int(width)
        if width < 1:
            raise UserError(f"width must be a positive integer, got {width}")
        if seed is not None:
            torch.manual_seed(seed)
        G, D = self._build(width, self.nz if nz is None else int(nz))
        if init:
            G.apply(init_weights)
            D.apply(init_weights)
        return G, D

    def feature_info(self, width: int | None = None) -> list[FeatureInfo]:
        """Block metadata without building weights (meta device: no memory)."""
        with torch.device("meta"):
            _, D = self.build(width, init=False)
        return D.feature_info


ARCHITECTURES: dict[str, ArchSpec] = {
    a.name: a
    for a in [
        ArchSpec("imagenet32", 32, 256, "uniform", 128,
                 "the paper's CIFAR-10 model (trained on ImageNet-1k 32x32)", _imagenet32, theano_release=True),
        ArchSpec("svhn32", 32, 100, "normal", 64, "the paper's SVHN model", _svhn32, theano_release=True),
        ArchSpec("dcgan32", 32, 100, "normal", 128, "pytorch/examples DCGAN at 32x32",
                 lambda w, nz: _pytorch_examples(w, nz, 32)),
        ArchSpec("dcgan64", 64, 100, "normal", 64, "pytorch/examples DCGAN at 64x64",
                 lambda w, nz: _pytorch_examples(w, nz, 64)),
    ]
}


def get_arch(name: str) -> ArchSpec:
    """Look an architecture up by name; unknown names fail with the list of valid ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UserError(f"unknown architecture {name!r}; available: {', '.join(ARCHITECTURES)}") from None


def build(name: str, width: int | None = None, **kwargs) -> tuple[Generator, Discriminator]:
    """Build (G, D) for a named architecture with DCGAN initialisation."""
    return get_arch(name).build(width, **kwargs)


def feature_dim(name: str, width: int | None = None, grid: int = 4) -> int:
    """Total pooled feature dim of all D blocks."""
    return sum(fi.pooled_dim(grid) for fi in get_arch(name).feature_info(width))


def init_weights(m: nn.Module) -> None:
    """DCGAN init: conv/linear weights N(0, 0.02); BN gamma N(1, 0.02), beta 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def sample_z(arch: ArchSpec, n: int, nz: int | None = None, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Draw n latent vectors from the architecture's prior."""
    nz = arch.nz if nz is None else nz
    if arch.prior == "uniform":
        return torch.rand(n, nz, generator=generator, device=device) * 2 - 1
    return torch.randn(n, nz, generator=generator, device=device)
