"""Figures made of tiles: crops and maps pasted into grids, grids side by side in one PNG.

Tiles are float arrays (H, W, 3) in [0, 1]; a grid is rows x columns of equal-size tiles
with a 2-pixel white gutter. :func:`save_panels` puts grids side by side under titles,
upscaled without smoothing, and writes the PNG atomically.

>>> import numpy as np
>>> g = grid([[np.zeros((4, 4, 3))] * 3] * 2)
>>> g.shape
(12, 18, 3)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.atomic import atomic_path

GUTTER = 2


def image_tile(x: torch.Tensor) -> np.ndarray:
    """A (3, h, w) image in [-1, 1] (or uint8) as an (h, w, 3) array in [0, 1]."""
    x = x.float() / 255 if x.dtype == torch.uint8 else (x.float().clamp(-1, 1) + 1) / 2
    return x.permute(1, 2, 0).cpu().numpy()


def gradient_tile(g: torch.Tensor) -> np.ndarray:
    """A (3, h, w) gradient as an image: grey is zero, scaled by its largest magnitude."""
    m = float(g.abs().max())
    g = g / m if m > 0 else g
    return ((g.float() + 1) / 2).clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def pad_to(tile: np.ndarray, h: int, w: int, fill: float = 1.0) -> np.ndarray:
    """``tile`` centred on an (h, w) canvas of ``fill``: crops keep their scale."""
    out = np.full((h, w, 3), fill, dtype=np.float32)
    th, tw = tile.shape[:2]
    y, x = (h - th) // 2, (w - tw) // 2
    out[y:y + th, x:x + tw] = tile
    return out


def grid(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Rows of equal-size tiles as one array, a white gutter between them."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.ones((len(rows) * (h + GUTTER), cols * (w + GUTTER), 3), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            out[i * (h + GUTTER):i * (h + GUTTER) + h, j * (w + GUTTER):j * (w + GUTTER) + w] = t
    return out


def save_panels(panels: Sequence[tuple[str, np.ndarray]], path: str | Path, scale: int = 4,
                row_labels: Sequence[str] = (), row_height: int | None = None, caption: str = "") -> Path:
    """Grids side by side, each under its title; optional labels down the left of the first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = max(9, 3 * scale)  # text grows with the tiles, so a scaled-down figure stays legible
    dpi, left, top, gap = 100, (12 * font if row_labels else 10), 4 * font, 30
    bottom = 3 * font if caption else 10
    h = max(p.shape[0] for _, p in panels) * scale
    W = left + sum(p.shape[1] * scale for _, p in panels) + gap * (len(panels) - 1) + 10
    W = max(W, left + int(0.75 * font * len(caption)) + 10)  # room for the caption
    H = top + h + bottom
    fig = Figure(figsize=(W / dpi, H / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    x = left
    for title, p in panels:
        ph, pw = p.shape[0] * scale, p.shape[1] * scale
        ax = fig.add_axes((x / W, 1 - (top + ph) / H, pw / W, ph / H))
        ax.imshow(np.clip(p, 0, 1), interpolation="nearest")
        ax.set_axis_off()
        fig.text((x + pw / 2) / W, 1 - (top / 2) / H, title, fontsize=font + 1, ha="center", va="center")
        x += pw + gap
    step = (row_height or 0) * scale
    for r, label in enumerate(row_labels):
        fig.text(6 / W, 1 - (top + r * step + step / 2) / H, label, fontsize=font, va="center")
    if caption:
        fig.text(left / W, (bottom / 2) / H, caption, fontsize=font - 1, va="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)
