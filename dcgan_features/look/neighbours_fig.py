"""The outputs of ``neighbours``: the grid of samples and their nearest training images, the
distance histograms, the neighbours' CSV and a one-row summary CSV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_path, write_csv_atomic
from .panels import grid, image_tile, save_panels

NEIGHBOUR_COLUMNS = ("sample", "space", "rank", "train_index", "distance")
SUMMARY_COLUMNS = ("checkpoint", "dataset", "train_images", "samples", "seed", "reference", "space",
                   "median_train_pair", "median_sample_nearest", "fraction_closer", "min_sample_nearest")


def sibling(out: Path, suffix: str, ext: str) -> Path:
    return out.with_name(out.stem + suffix + ext)


def write_outputs(out: Path, res, train: torch.Tensor, cfg, checkpoint: str) -> dict:
    spaces = list(res.indices)
    rows = [{"sample": i, "space": s, "rank": r, "train_index": int(res.indices[s][i, r]),
             "distance": f"{float(res.distances[s][i, r]):.6g}"}
            for s in spaces for i in range(len(res.samples)) for r in range(res.indices[s].shape[1])]
    write_csv_atomic(sibling(out, "", ".csv"), NEIGHBOUR_COLUMNS, rows)
    summary = [{"checkpoint": checkpoint, "dataset": cfg.dataset, "train_images": len(train), "samples": len(res.samples),
                "seed": cfg.seed, "reference": len(res.reference[s]), "space": s,
                "median_train_pair": f"{res.median_pair(s):.6g}",
                "median_sample_nearest": f"{float(res.distances[s][:, 0].median()):.6g}",
                "fraction_closer": f"{res.fraction(s):.4f}",
                "min_sample_nearest": f"{float(res.distances[s][:, 0].min()):.6g}"} for s in spaces]
    write_csv_atomic(sibling(out, "_summary", ".csv"), SUMMARY_COLUMNS, summary)
    _grid_png(out, res, train)
    _histogram_png(sibling(out, "_distances", ".png"), res)
    return {"png": str(out), "spaces": {s["space"]: s for s in summary}}


def _grid_png(out: Path, res, train: torch.Tensor) -> None:
    titles = {"pixel": "nearest training images, pixels (L2)", "feature": "nearest in D features (cosine)"}
    panels = [("sample", grid([[image_tile(x)] for x in res.samples]))]
    for s, idx in res.indices.items():
        panels.append((titles[s], grid([[image_tile(train[int(j)]) for j in row] for row in idx])))
    save_panels(panels, out, scale=3)


def _histogram_png(path: Path, res) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spaces = list(res.indices)
    fig = Figure(figsize=(5.5 * len(spaces), 3.8), dpi=100)
    FigureCanvasAgg(fig)
    for j, s in enumerate(spaces):
        ax = fig.add_subplot(1, len(spaces), j + 1)
        a, b = res.reference[s].numpy(), res.distances[s][:, 0].numpy()
        bins = np.linspace(0, max(a.max(), b.max()) * 1.02 + 1e-9, 40)
        ax.hist(a, bins=bins, alpha=0.6, density=True, label=f"train to nearest other train ({len(a)})")
        ax.hist(b, bins=bins, alpha=0.6, density=True, label=f"sample to nearest train ({len(b)})")
        ax.axvline(res.median_pair(s), color="k", ls="--", lw=1, label="median train pair")
        ax.set_xlabel("Euclidean distance, pixels in [-1, 1]" if s == "pixel" else "cosine distance, D features")
        ax.set_title(f"{s}: {100 * res.fraction(s):.1f}% of samples nearer than the median pair", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
