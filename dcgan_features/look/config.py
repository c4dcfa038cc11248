"""The defaults of the generation commands (``sample``, ``interpolate``, ``arithmetic``), in one
place and importable without torch: the CLI and :mod:`.generate` both read them.

>>> SampleConfig().n, InterpolateConfig().rows, InterpolateConfig().steps, ArithmeticConfig().noise
(64, 8, 10, 0.25)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SampleConfig", "InterpolateConfig", "ArithmeticConfig"]


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
