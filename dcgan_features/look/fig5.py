"""The picture and the table of ``visualize``: per map, each top response's receptive-field crop
above its guided-backpropagation map, trained D beside random D; one CSV row per response."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.atomic import write_csv_atomic
from .panels import gradient_tile, grid, image_tile, pad_to, save_panels

CSV_COLUMNS = ("model", "block", "map", "rank", "image", "y", "x", "activation", "rf_y0", "rf_x0", "rf_y1", "rf_x1")


def write_csv(path: Path, sides: Sequence) -> None:
    """(model, block, map, rank, image, y, x, activation, receptive field) per response."""
    rows = []
    for s in sides:
        for m, c in enumerate(s.top.maps):
            for r in range(s.top.values.shape[1]):
                y, x = s.top.positions[m, r].tolist()
                y0, x0, y1, x1 = s.boxes[m][r]
                rows.append({"model": s.label, "block": s.block, "map": c, "rank": r,
                             "image": int(s.top.images[m, r]), "y": y, "x": x,
                             "activation": f"{float(s.top.values[m, r]):.6g}",
                             "rf_y0": y0, "rf_x0": x0, "rf_y1": y1, "rf_x1": x1})
    write_csv_atomic(path, CSV_COLUMNS, rows)


def _panel(side, images: torch.Tensor) -> np.ndarray:
    th = max(y1 - y0 + 1 for row in side.boxes for (y0, _, y1, _) in row)
    tw = max(x1 - x0 + 1 for row in side.boxes for (_, x0, _, x1) in row)
    rows = []
    for m in range(len(side.top.maps)):
        crops, maps = [], []
        for r, (y0, x0, y1, x1) in enumerate(side.boxes[m]):
            img = images[int(side.top.images[m, r])][:, y0:y1 + 1, x0:x1 + 1]
            g = side.grads[m, r][:, y0:y1 + 1, x0:x1 + 1]
            crops.append(pad_to(image_tile(img), th, tw))
            maps.append(pad_to(gradient_tile(g), th, tw, fill=0.5))
        rows += [crops, maps]
    return grid(rows)


def write_figure(path: Path, sides: Sequence, images: torch.Tensor, arch: str) -> None:
    """One PNG: a panel per D, rows = maps (crop row above guided-map row), columns = rank."""
    panels = [(f"{s.label}, {arch} block {s.block}", _panel(s, images)) for s in sides]
    th = panels[0][1].shape[0] // (2 * len(sides[0].top.maps))
    labels = [f"map {c}" for c in sides[0].top.maps]
    scale = max(2, min(6, 1800 // max(p.shape[0] for _, p in panels)))  # crops big enough to see
    save_panels(panels, path, scale=scale, row_labels=labels, row_height=2 * th,
                caption="each map: receptive-field crops of its top responses (largest left), "
                        "guided backprop below (grey = 0)")
