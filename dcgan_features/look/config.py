"""The settings of the look-inside commands, importable without torch (the CLI reads its defaults here).

>>> VisualizeConfig().top_k, NeighboursConfig().k, ForgetConfig().n
(8, 5, 64)
"""

from __future__ import annotations

from dataclasses import dataclass


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

    n: int = 64  # the --n of the numbered `sample` grid the box ids come from
    seed: int = 0  # its --seed
    layer: str | None = None  # None: the second-highest conv layer (the last hidden one)
    drop: int | None = None  # None: every map whose probe weight is > 0; K: the K largest weights
    C: float = 1.0  # inverse L2 strength of the probe
    holdout: float = 0.25  # fraction of the box images held out to score the probe
    show: int = 16  # samples drawn with and without the maps
    show_seed: int = 1  # their seed (new z, not the ones the boxes were drawn on)
    bn: str | None = None
    device: str = "auto"


__all__ = ["ForgetConfig", "NeighboursConfig", "VisualizeConfig"]
