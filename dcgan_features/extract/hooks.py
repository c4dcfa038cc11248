"""Discriminator features: forward hooks that pool each named block's output at once.

A feature of block ``dK`` is its post-activation output, adaptive-max-pooled to
``grid x grid`` and flattened (DESIGN section 2); the features of the chosen blocks are
concatenated in block order. Each hook pools and copies *inside the hook*, straight into
the output matrix: the blocks end in an in-place LeakyReLU, so a hook that kept a
reference to its tensor could see it overwritten by whatever in-place op runs next.

BatchNorm has four modes (``BN_MODES``): ``running`` uses the stored statistics (eval
mode); ``batch`` normalises with each batch's own statistics without touching the stored
ones; ``recompute`` first re-estimates every BN layer's population statistics over the
training images with :func:`recompute_bn_stats` (the average over batches of each batch's
statistics, as the authors' script did), then extracts as ``running``; ``authors`` is ``recompute`` as
the SVHN authors' script does it exactly (the train rows outside their validation split,
in their shuffled order, batches of 128, the biased variance of each batch: see
``extract``).

>>> from dcgan_features.nets.architectures import build
>>> _, D = build("imagenet32", width=4, seed=0)
>>> x = torch.rand(2, 3, 32, 32) * 2 - 1
>>> with FeatureExtractor(D, layers="d5..d6", grid=4) as fx:
...     fx.layers, fx.layer_dims, tuple(fx(x).shape)
(['d5', 'd6'], [256, 256], (2, 512))
>>> D.training  # the caller's mode is back
True
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UserError

BN_MODES = ("recompute", "authors", "running", "batch")


# ------------------------------------------------------------------------- layers


def _span(names: Sequence[str]) -> str:
    return f"{names[0]}..{names[-1]}" if len(names) > 2 else ", ".join(names)


def parse_layers(spec: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """``all``, a comma list ``d1,d3``, a range ``d2..d4`` (or a mix) -> names in block order.

    >>> parse_layers("d4..d6,d1", ["d1", "d2", "d3", "d4", "d5", "d6"])
    ['d1', 'd4', 'd5', 'd6']
    >>> parse_layers("d7", ["d1", "d2", "d3"])
    Traceback (most recent call last):
    dcgan_features.core.errors.UserError: block 'd7' not in model; available: d1..d3
    """
    available = list(available)
    items = layer_items(spec, f"all or names from {_span(available)}")
    chosen: set[str] = set()
    for item in items:
        if item == "all":
            chosen.update(available)
            continue
        ends = item.split("..") if ".." in item else [item, item]
        if len(ends) != 2:
            raise UserError(f"bad layer range {item!r}; write it as d2..d4")
        for end in ends:
            if end not in available:
                raise UserError(f"block {end!r} not in model; available: {_span(available)}")
        lo, hi = available.index(ends[0]), available.index(ends[1])
        if lo > hi:
            raise UserError(f"layer range {item!r} runs backwards; write {ends[1]}..{ends[0]}")
        chosen.update(available[lo:hi + 1])
    return [n for n in available if n in chosen]


def layer_items(spec: str | Sequence[str], hint: str) -> list[str]:
    """The comma-separated items of ``--layer``, refusing an empty item or one given twice
    (a list from code is deduplicated instead).

    >>> layer_items("d1, d3", "d1..d3")
    ['d1', 'd3']
    >>> layer_items("d1,,d3", "d1..d3")
    Traceback (most recent call last):
    dcgan_features.core.errors.UserError: --layer 'd1,,d3' has an empty name (two commas, or one at an end); use d1..d3
    >>> layer_items("d2,d2", "d1..d3")
    Traceback (most recent call last):
    dcgan_features.core.errors.UserError: --layer 'd2,d2' names 'd2' twice; give each once
    """
    if not isinstance(spec, str):  # a list from code, not typed: its repeats and blanks are dropped
        spec = ",".join(dict.fromkeys(s.strip() for s in spec if s.strip()))
    given = spec
    items = [s.strip() for s in spec.split(",")]
    if not any(items):
        raise UserError(f"no layer given; use {hint}")
    if not all(items):
        raise UserError(f"--layer {given!r} has an empty name (two commas, or one at an end); use {hint}")
    twice = next((s for i, s in enumerate(items) if s in items[:i]), None)
    if twice is not None:
        raise UserError(f"--layer {given!r} names {twice!r} twice; give each once")
    return items


def check_grid(D: nn.Module, layers: Sequence[str], grid: int) -> None:
    """A grid finer than a block's output would invent features: refuse it, naming the block."""
    if grid < 1:
        raise UserError(f"grid must be at least 1, got {grid}")
    for fi in D.feature_info:
        if fi.name in layers and grid > fi.spatial:
            raise UserError(f"grid {grid} is larger than block {fi.name}'s {fi.spatial}x{fi.spatial} output; "
                            f"use --grid {fi.spatial} or leave {fi.name} out of --layer")


# ---------------------------------------------------------------------- extractor


def to_model_input(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 in [-1, 1] on ``device`` (moved as uint8: 4x fewer bytes)."""
    x = images.to(device, non_blocking=True).float()
    return x.div_(127.5).sub_(1.0)


def grid_max_pool(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, grid)``, exactly, but several times faster on CPU for NCHW input.

    PyTorch's NCHW CPU max-pool kernels loop over each window; when the windows tile the
    map (H, W divisible by ``grid``) an elementwise max over row slices followed by a
    reduction over the innermost axis gives the same values with vectorised loops.
    Channels-last input (fast already) and uneven windows use adaptive_max_pool2d; a 1x1
    grid is one reduction over both spatial axes, in any memory format.

    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.equal(grid_max_pool(x, 4), F.adaptive_max_pool2d(x, 4))
    True
    >>> torch.equal(grid_max_pool(x, 1), F.adaptive_max_pool2d(x, 1))
    True
    """
    B, C, H, W = x.shape
    if grid == 1:
        return x.amax((2, 3), keepdim=True)
    if (x.device.type != "cpu" or H % grid or W % grid or not x.is_contiguous()
            or x.is_contiguous(memory_format=torch.channels_last) and C > 1):
        return F.adaptive_max_pool2d(x, grid)
    kh, kw = H // grid, W // grid
    rows = x.view(B, C, grid, kh, W)  # (B, C, grid, kh, W): the kh rows of each window band
    m = rows[:, :, :, 0]
    for i in range(1, kh):
        m = torch.maximum(m, rows[:, :, :, i])
    return m.reshape(B, C, grid, grid, kw).amax(4)  # (B, C, grid, grid)


class PoolHook:
    """A forward hook that max-pools a module's output to ``grid x grid`` and copies it at once.

    It writes into ``self.out[:, offset:offset + dim]`` (set per batch by the extractor),
    converting to the output dtype as it copies, and keeps no reference to the module's
    output, so a later in-place op cannot change what was captured.
    """

    def __init__(self, grid: int, offset: int, dim: int):
        self.grid, self.offset, self.dim = grid, offset, dim
        self.out: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if self.out is None:  # a plain D(x) while the extractor is active: capture nothing
            return
        pooled = grid_max_pool(output, self.grid).flatten(1)  # (B, C * grid * grid)
        if pooled.shape[1] != self.dim:
            raise RuntimeError(f"hooked output gives {pooled.shape[1]} features, metadata says {self.dim}")
        self.out[:, self.offset:self.offset + self.dim].copy_(pooled)


def batchnorms(D: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_extraction_modes(model: nn.Module, bn: str) -> Callable[[], None]:
    """Eval mode, with batch-statistics BN when ``bn == "batch"``; returns what restores the caller's modes."""
    saved = [(m, m.training) for m in model.modules()]
    saved_bn = [(m, m.track_running_stats) for m in batchnorms(model)]

    def restore() -> None:
        for m, track in saved_bn:
            m.track_running_stats = track
        for m, training in saved:
            m.training = training

    model.eval()
    if bn == "batch":
        for m in batchnorms(model):
            # train mode + no tracking: normalise by batch statistics, update nothing
            m.train()
            m.track_running_stats = False
    return restore


class FeatureExtractor:
    """Hooks on D's named blocks; ``fx(x)`` -> (N, dim) features. Use it as a context manager.

    ``bn`` is ``running`` (eval mode, stored statistics; also what ``recompute`` extracts
    with once :func:`recompute_bn_stats` has run) or ``batch`` (batch statistics, stored
    ones untouched). On exit, even through an exception, the hooks are removed and every
    module's train/eval mode and BN setting are restored.
    """

    def __init__(self, D: nn.Module, layers: str | Sequence[str] = "all", grid: int = 4, bn: str = "running",
                 dtype: torch.dtype = torch.float32):
        if bn not in BN_MODES:
            raise UserError(f"unknown bn mode {bn!r}; choose one of {', '.join(BN_MODES)}")
        self.D = D
        self.layers = parse_layers(layers, [fi.name for fi in D.feature_info])
        check_grid(D, self.layers, grid)
        self.grid, self.bn, self.dtype = grid, bn, dtype
        info = {fi.name: fi for fi in D.feature_info}
        self.layer_dims = [info[n].pooled_dim(grid) for n in self.layers]
        self.dim = sum(self.layer_dims)
        self._hooks: list[PoolHook] = []
        self._handles: list = []
        self._saved: Callable[[], None] | None = None  # restores the modes while active

    # (1) install: remember modes, set the BN mode, register one hook per chosen block
    def __enter__(self) -> "FeatureExtractor":
        if self._saved is not None:
            raise RuntimeError("FeatureExtractor is already active")
        self._saved = set_extraction_modes(self.D, self.bn)
        try:
            offset = 0
            for name, dim in zip(self.layers, self.layer_dims):
                hook = PoolHook(self.grid, offset, dim)
                self._handles.append(self.D.blocks[name].register_forward_hook(hook))
                self._hooks.append(hook)
                offset += dim
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    # (2) remove hooks and restore modes, whatever happened inside the block
    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._hooks = [], []
        if self._saved is not None:
            self._saved()
        self._saved = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Features of a float batch in [-1, 1]: (N, dim) in ``self.dtype`` (or into ``out``)."""
        if self._saved is None:
            raise RuntimeError("use FeatureExtractor inside a `with` block")
        if out is None:
            out = torch.empty((x.shape[0], self.dim), dtype=self.dtype, device=x.device)
        for hook in self._hooks:
            hook.out = out
        try:
            last = self.layers[-1]
            for name, block in self.D.blocks.items():  # blocks past the last chosen one and the head are skipped
                x = block(x)
                if name == last:
                    break
        finally:
            for hook in self._hooks:
                hook.out = None
        return out


def extract_features(D: nn.Module, x: torch.Tensor, layers: str | Sequence[str] = "all", grid: int = 4,
                     bn: str = "running") -> torch.Tensor:
    """One-shot convenience: hooks installed, one batch extracted, hooks removed.

    >>> from dcgan_features.nets.architectures import build
    >>> _, D = build("svhn32", width=2, seed=0)
    >>> extract_features(D.eval(), torch.zeros(3, 3, 32, 32)).shape
    torch.Size([3, 224])
    """
    with FeatureExtractor(D, layers, grid, bn) as fx:
        return fx(x)


# --------------------------------------------------------------------- recompute


@torch.no_grad()
def recompute_bn_stats(D: nn.Module, batches: Iterable[torch.Tensor], upto: str | None = None,
                       forward: Callable[[torch.Tensor], object] | None = None, biased: bool = False,
                       gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """Re-estimate every BN layer's population mean and variance over ``batches``.

    Each BN layer's statistics become the plain average over batches of its batch mean and
    batch variance, measured in train mode, so every layer sees the batch-normalised output
    of the layers before it, as in the authors' script. Each batch's variance is PyTorch's
    unbiased one (n/(n-1) times the one it normalises with); ``biased=True`` averages the
    biased ones instead, as Theano's ``T.mean(T.sqr(X - u))`` in the authors' script. It is
    :func:`batch_bn_stats` followed by :func:`set_bn_stats`; a ``torchrun`` extraction runs
    the first part on each rank's batches and ``gather`` hands every rank the rows of all
    batches, in order, so every rank gets one process's bits. Weights are not touched; the
    running statistics of D are replaced (copy D first to keep the old ones). Only blocks up
    to ``upto`` (default: all) run, the BN layers after it are reset; a model without named
    ``blocks`` (any nn.Module) runs ``forward`` (default: the model itself) instead. The
    caller's modes and momenta are restored. Returns the number of batches used.

    >>> from dcgan_features.nets.architectures import build
    >>> _, D = build("dcgan32", width=2, seed=0)
    >>> recompute_bn_stats(D, [torch.rand(4, 3, 32, 32)] * 2)
    2
    >>> int(D.blocks.d2[1].num_batches_tracked)
    2
    """
    stats = batch_bn_stats(D, batches, upto, forward, biased)
    if gather is not None:
        stats = gather(stats)
    if stats.shape[0] == 0 and recomputed_batchnorms(D, upto, forward):
        raise UserError("no training images to recompute BatchNorm statistics from; use --bn running or batch")
    set_bn_stats(D, stats, upto, forward)
    return stats.shape[0]


def recomputed_batchnorms(D: nn.Module, upto: str | None = None, forward: Callable | None = None
                          ) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BN layers a re-estimation runs, in order: those of D's blocks up to ``upto`` (all
    blocks when None), or every BN layer of a model run through ``forward``."""
    if forward is not None or not hasattr(D, "blocks"):
        return batchnorms(D)
    bns = []
    for name, block in D.blocks.items():
        bns += batchnorms(block)
        if name == upto:
            break
    return bns


@torch.no_grad()
def batch_bn_stats(D: nn.Module, batches: Iterable[torch.Tensor], upto: str | None = None,
                   forward: Callable[[torch.Tensor], object] | None = None, biased: bool = False) -> torch.Tensor:
    """Each batch's BN statistics, float64 on the CPU: one row per batch, per BN layer of
    :func:`recomputed_batchnorms` its batch mean then its batch variance (unbiased, or with
    ``biased`` the variance it normalises with, computed in float64).

    D runs in train mode (each layer normalises with the batch's own statistics, so a row
    depends on its batch alone); the statistics are read from the running buffers with
    ``momentum=1``, which makes them the batch's own, computed by BatchNorm itself.
    Every BN buffer of D is reset; modes and momenta are restored.
    """
    if forward is None and not hasattr(D, "blocks"):
        forward = D
    bns = recomputed_batchnorms(D, upto, forward)
    saved = [(m, m.training) for m in D.modules()]
    momenta = [(m, m.momentum) for m in batchnorms(D)]
    var: dict = {}

    def grab_biased(m, inputs):  # the input's per-channel variance as the layer normalises with it
        x = inputs[0].detach()
        var[m] = x.transpose(0, 1).reshape(x.shape[1], -1).double().var(1, unbiased=False)

    hooks = [m.register_forward_pre_hook(grab_biased) for m in bns] if biased else []
    rows = []
    try:
        for m, _ in momenta:
            m.reset_running_stats()
            m.momentum = 1.0  # running stats := this batch's stats (1 * batch + 0 * old)
        D.train()
        for x in batches:
            if forward is not None:
                forward(x)
            else:
                for name, block in D.blocks.items():
                    x = block(x)
                    if name == upto:
                        break
            rows.append(torch.cat([torch.zeros(0, dtype=torch.float64)] +  # no BN layer: an empty row
                                  [t.double().cpu() for m in bns
                                   for t in (m.running_mean, var[m] if biased else m.running_var)]))
    finally:
        for h in hooks:
            h.remove()
        for m, mom in momenta:
            m.reset_running_stats()
            m.momentum = mom
        for m, training in saved:
            m.training = training
    width = sum(2 * m.num_features for m in bns)
    return torch.stack(rows) if rows else torch.zeros((0, width), dtype=torch.float64)


@torch.no_grad()
def set_bn_stats(D: nn.Module, stats: torch.Tensor, upto: str | None = None, forward: Callable | None = None) -> None:
    """Set the BN layers of :func:`recomputed_batchnorms` to the average of the rows of
    ``stats`` (from :func:`batch_bn_stats`), summed in row order in float64: one fixed
    order whatever produced the rows. ``num_batches_tracked`` becomes the number of rows.
    """
    acc = torch.zeros(stats.shape[1], dtype=torch.float64)
    for row in stats:  # sequential on purpose: the same additions in the same order everywhere
        acc += row.double()
    mean = acc / max(stats.shape[0], 1)
    at = 0
    for m in recomputed_batchnorms(D, upto, forward):
        c = m.num_features
        m.running_mean.copy_(mean[at:at + c])
        m.running_var.copy_(mean[at + c:at + 2 * c])
        m.num_batches_tracked.fill_(stats.shape[0])
        at += 2 * c


def bn_state(D: nn.Module) -> dict[str, torch.Tensor]:
    """The BN running statistics of D (names as in its state dict), on the CPU."""
    keys = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v.detach().cpu().clone() for k, v in D.state_dict().items() if k.rsplit(".", 1)[-1] in keys}
