"""Images from a generator: sample grids, latent walks, and latent vector arithmetic.

These reproduce the paper's generation findings (Radford et al. 2015, sections 6.1 and
6.3) on any checkpoint, trained or imported:

* :func:`sample` draws ``n`` latent vectors from a seed; the same ``(n, seed)`` always
  gives the same vectors, so a tile id in a numbered grid names one z.
* :func:`interpolate` walks linearly between random pairs of z (paper figure 4).
* :func:`arithmetic` averages the z of chosen tiles per group and decodes
  ``mean(a) - mean(b) + mean(c)`` and small uniform perturbations of it (paper figure 7).

BatchNorm: trained checkpoints carry running statistics (``bn="running"``). Imported
Theano weights do not, and the authors generated with the statistics of the batch
being generated (``bn="batch"``); in batch mode a figure is decoded in one forward pass,
so every tile is normalised with the same statistics.

>>> import torch
>>> from dcgan_features.nets.architectures import build, get_arch
>>> G, _ = build("svhn32", width=2, seed=0)
>>> G = prepare(G, "running")
>>> z, x = sample(G, get_arch("svhn32"), n=4, seed=1)
>>> tuple(z.shape), tuple(x.shape)
((4, 100), (4, 3, 32, 32))
>>> torch.equal(sample(G, get_arch("svhn32"), n=4, seed=1)[1], x)
True
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..nets.architectures import ArchSpec, Generator, get_arch, sample_z
from ..core.atomic import atomic_path
from ..core.devices import resolve_device
from ..core.errors import UserError
from .config import ArithmeticConfig

BN_MODES = ("batch", "running")


# ---------------------------------------------------------------------- the model


def use_batch_statistics(model: nn.Module) -> nn.Module:
    """Make every BatchNorm normalise with the current batch's statistics, even in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            # without buffers torch takes batch statistics and updates nothing
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return model


def prepare(G: nn.Module, bn: str) -> nn.Module:
    """Eval mode, no gradients, BN statistics per ``bn`` (``batch`` or ``running``)."""
    if bn not in BN_MODES:
        raise UserError(f"--bn {bn!r}: choose one of {', '.join(BN_MODES)}")
    G.eval().requires_grad_(False)
    return use_batch_statistics(G) if bn == "batch" else G


@dataclass
class LoadedGenerator:
    G: Generator
    spec: ArchSpec
    nz: int
    bn: str
    device: torch.device
    imported: bool


def load_generator(path: str | Path, bn: str | None = None, device: str = "cpu") -> LoadedGenerator:
    """G of a checkpoint, ready to decode; ``bn`` defaults to batch (imported) or running (trained)."""
    from ..nets import checkpoint

    ckpt = checkpoint.load(path)
    G, _ = checkpoint.models_from_payload(ckpt, str(path))
    imported = bool(ckpt.get("imported"))
    if bn is None:
        bn = "batch" if imported else "running"
    if bn == "running" and imported:
        raise UserError(f"checkpoint {str(path)!r} holds imported Theano weights without running BN "
                        f"statistics; use --bn batch")
    dev = resolve_device(device)
    G = prepare(G, bn).to(dev)
    return LoadedGenerator(G, get_arch(ckpt["arch"]), int(ckpt["nz"]), bn, dev, imported)


def latents(spec: ArchSpec, n: int, seed: int, nz: int | None = None) -> torch.Tensor:
    """``n`` z vectors from the prior, drawn on the CPU so a seed means the same z on any device."""
    g = torch.Generator().manual_seed(int(seed))
    return sample_z(spec, n, nz=nz, generator=g)


@torch.no_grad()
def decode(G: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] on the CPU. Batch-statistics models decode z in one pass."""
    batch_stats = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None
                      for m in G.modules())
    if batch_stats and len(z) < 2:
        raise UserError("batch-statistics BatchNorm needs at least 2 images per figure")
    device = next(G.parameters()).device
    step = len(z) if batch_stats else batch_size
    return torch.cat([G(z[i:i + step].to(device)).float().cpu() for i in range(0, len(z), step)])


# -------------------------------------------------------------------- the figures


def sample(G: nn.Module, spec: ArchSpec, n: int, seed: int, nz: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, images) of the ``n`` samples of ``seed``; tile ``i`` of a grid is ``z[i]``."""
    z = latents(spec, n, seed, nz)
    return z, decode(G, z)


def interpolate(G: nn.Module, spec: ArchSpec, rows: int, steps: int, seed: int,
                nz: int | None = None) -> torch.Tensor:
    """``rows`` linear walks of ``steps`` images each, between random pairs of z; (rows*steps, 3, H, W)."""
    if steps < 2:
        raise UserError("--steps must be at least 2 (the two end points)")
    ends = latents(spec, 2 * rows, seed, nz).reshape(rows, 2, -1)
    t = torch.linspace(0, 1, steps).reshape(1, steps, 1)
    z = ends[:, :1] * (1 - t) + ends[:, 1:] * t  # rows x steps x nz
    return decode(G, z.reshape(rows * steps, -1))


@dataclass
class Arithmetic:
    """Tiles of an arithmetic figure: one row per group (its mean first), then the result row."""

    images: torch.Tensor  # (4*cols, 3, H, W), blank tiles are -1 (black)
    cols: int
    row_labels: list[str]


def check_ids(flag: str, ids: Sequence[int], n: int) -> None:
    """Every id must name a tile of a grid of ``n`` samples."""
    if not ids:
        raise UserError(f"{flag} needs at least one sample id")
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise UserError(f"{flag} id {bad[0]} is out of range: a grid of --n {n} has ids 0..{n - 1}")


def arithmetic(G: nn.Module, spec: ArchSpec, n: int, seed: int, a: Sequence[int], b: Sequence[int],
               c: Sequence[int], neighbours: int = ArithmeticConfig.neighbours, noise: float = ArithmeticConfig.noise,
               nz: int | None = None) -> Arithmetic:
    """Decode ``mean z[a] - mean z[b] + mean z[c]`` and ``neighbours`` perturbations of it.

    Ids index the grid of :func:`sample` with the same ``n`` and ``seed``. The perturbations
    add uniform noise in ``[-noise, noise]`` to the result, as the paper's figure 7.
    """
    for flag, ids in (("--a", a), ("--b", b), ("--c", c)):
        check_ids(flag, ids, n)
    if neighbours < 0 or noise < 0:
        raise UserError("--neighbours and --noise must not be negative")
    z = latents(spec, n, seed, nz)
    g = torch.Generator().manual_seed(int(seed) + 1)  # independent of the grid's stream
    means = torch.stack([z[list(ids)].mean(0) for ids in (a, b, c)])
    y = means[0] - means[1] + means[2]
    near = y + (torch.rand(neighbours, y.numel(), generator=g) * 2 - 1) * noise
    # one pass: in batch mode the grid's own samples set the statistics, as in `sample`
    out = decode(G, torch.cat([z, means, y[None], near]))
    grid, mean_img, rest = out[:n], out[n:n + 3], out[n + 3:]

    cols = max(1 + max(len(a), len(b), len(c)), 1 + neighbours)
    tiles = torch.full((4, cols, *out.shape[1:]), -1.0)  # blank tiles: black, as the grid's padding
    for r, ids in enumerate((a, b, c)):
        tiles[r, 0] = mean_img[r]
        tiles[r, 1:1 + len(ids)] = grid[list(ids)]
    tiles[3, :len(rest)] = rest
    fmt = ",".join
    labels = [f"a ({fmt(map(str, a))})", f"- b ({fmt(map(str, b))})", f"+ c ({fmt(map(str, c))})",
              "= a - b + c"]
    return Arithmetic(tiles.reshape(4 * cols, *out.shape[1:]), cols, labels)


# --------------------------------------------------------------------------- PNGs


def grid_array(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """Tile images in [-1, 1] into one uint8 (H, W, 3) array, ``nrow`` tiles per row."""
    from torchvision.utils import make_grid

    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=padding)
    return grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_png(images: torch.Tensor, path: str | Path, nrow: int, numbered: bool = False,
             row_labels: Sequence[str] | None = None, first_label: str | None = None, scale: int = 3) -> Path:
    """Write a grid PNG atomically; optionally draw tile ids (row-major) or row labels."""
    arr = grid_array(images, nrow)
    if not numbered and not row_labels:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
    else:
        buf = _annotated_png(arr, images.shape[-1], nrow, len(images), numbered, row_labels, first_label, scale)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def _annotated_png(arr: np.ndarray, tile: int, nrow: int, n: int, numbered: bool,
                   row_labels: Sequence[str] | None, first_label: str | None, scale: int) -> io.BytesIO:
    # Figure + Agg canvas directly: no pyplot, so no global figure state or GUI backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = arr.shape[:2]
    left = 150 if row_labels else 0
    top = 30 if first_label else 0
    dpi = 100
    fig = Figure(figsize=((w * scale + left) / dpi, (h * scale + top) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    W, H = w * scale + left, h * scale + top
    ax = fig.add_axes((left / W, 0, w * scale / W, h * scale / H))
    ax.imshow(arr, interpolation="nearest")
    ax.set_axis_off()
    step = tile + 2  # make_grid's padding
    if numbered:
        for i in range(n):
            x, y = (i % nrow) * step + 3, (i // nrow) * step + 3
            ax.text(x, y, str(i), fontsize=7, color="white", va="top", ha="left",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.8, "linewidth": 0})
    for r, label in enumerate(row_labels or []):
        fig.text(4 / W, 1 - (top + (r * step + step / 2) * scale) / H, label, fontsize=9, va="center")
    if first_label:
        fig.text((left + step * scale / 2) / W, 1 - (top / 2) / H, first_label, fontsize=9, ha="center",
                 va="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf
