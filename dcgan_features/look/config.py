"""The defaults of the look commands, in one place and importable without torch: the CLI and the
commands read them. Generation (``sample``, ``interpolate``, ``arithmetic``) and the look-inside
commands (``visualize``, ``neighbours``, ``forget``).

>>> SampleConfig().n, InterpolateConfig().rows, InterpolateConfig().steps, ArithmeticConfig().noise
(64, 8, 10, 0.25)
>>> VisualizeConfig().top_k, NeighboursConfig().k, ForgetConfig().n
(8, 5, 64)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SampleConfig", "InterpolateConfig", "ArithmeticConfig", "VisualizeConfig", "NeighboursConfig",
           "ForgetConfig"]

@dataclass(frozen=True)
class SampleConfig:
    """A grid of ``n`` samples; tile ids run row by row from 0."""

    n: int = 64  # 8 x 8, as the paper's figures; `arithmetic --n` names the grid its ids come from
    nrow: int | None = None  # tiles per row; None: about sqrt(n)
    numbered: bool = False  # draw each tile's id (for `arithmetic --a/--b/--c`)
    seed: int = 0
    device: str = "auto"
    bn: str | None = None  # None: batch statistics for imported checkpoints, running otherwise


@dataclass(frozen=True)
class InterpolateConfig:
    """``rows`` linear walks of ``steps`` images each (paper figure 4)."""

    rows: int = 8
    steps: int = 10  # end points included
    seed: int = 0
    device: str = "auto"
    bn: str | None = None


@dataclass(frozen=True)
class ArithmeticConfig:
    """mean z[a] - mean z[b] + mean z[c] and ``neighbours`` perturbations of it (paper figure 7)."""

    n: int = SampleConfig.n  # the grid the ids come from: the same default as `sample`
    neighbours: int = 8
    noise: float = 0.25  # uniform in [-noise, noise], added to the result's z
    seed: int = 0
    device: str = "auto"
    bn: str | None = None


@dataclass(frozen=True)
class VisualizeConfig:
    """``visualize``: top responses of D's feature maps and their guided-backprop maps (paper Fig. 5)."""

    dataset: str = "digits"
    split: str = "train"
    data_dir: str | None = None
    block: str | None = None  # None: D's last conv block
    n_maps: int = 8  # the first N maps of the block, unless ``maps`` names them
    maps: tuple[int, ...] | None = None
    top_k: int = 8
    random_baseline: bool = True  # the same for a random D of the same architecture and width
    seed: int = 0  # of the random D
    bn: str = "recompute"  # or "running" (a trained checkpoint's own statistics)
    bn_images: int = 10000  # first images of the split the BN statistics are re-estimated on
    batch_size: int = 256
    limit: int | None = None  # first N images of the split searched
    device: str = "auto"


@dataclass(frozen=True)
class NeighboursConfig:
    """``neighbours``: samples' nearest training images in pixel and D-feature space (memorisation)."""

    dataset: str = "digits"
    data_dir: str | None = None
    n: int = 16  # samples shown and measured
    k: int = 5  # neighbours per sample and space
    seed: int = 0  # of the samples' z and of the reference training images
    reference: int = 1000  # training images whose nearest other training image sets the baseline
    chunk: int = 4096  # training images compared at a time
    bn: str | None = None  # G: batch (imported) or running; D features: BN re-estimated like `extract`
    bn_images: int = 10000
    limit: int | None = None  # first N training images only
    device: str = "auto"


@dataclass(frozen=True)
class ForgetConfig:
    """``forget``: a logistic probe on a G layer finds an object's feature maps; dropping them (Fig. 6)."""

    n: int = SampleConfig.n  # the --n of the numbered `sample` grid the box ids come from
    seed: int = 0  # its --seed
    layer: str | None = None  # None: the second-highest conv layer (the last hidden one)
    drop: int | None = None  # None: every map whose probe weight is > 0; K: the K largest weights
    C: float = 1.0  # inverse L2 strength of the probe
    holdout: float = 0.25  # fraction of the box images held out to score the probe
    show: int = 16  # samples drawn with and without the maps
    show_seed: int = 1  # their seed (new z, not the ones the boxes were drawn on)
    bn: str | None = None
    device: str = "auto"
