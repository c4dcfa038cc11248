"""``forget`` end to end: check the request, fit the probe on the boxed samples, draw new
samples with and without the chosen maps, write the picture and the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..core.atomic import write_csv_atomic
from ..core.errors import UserError
from .boxes import read_boxes
from .config import ForgetConfig
from .forget import capture, fit_probe, inside, with_and_without
from .generate import latents, load_generator
from .layers import g_layer
from .panels import grid, image_tile, save_panels

MAP_COLUMNS = ("layer", "map", "weight", "dropped")
SUMMARY_COLUMNS = ("checkpoint", "layer", "maps", "dropped", "positives", "negatives", "heldout_images",
                   "train_accuracy", "heldout_accuracy", "box_contrast_before", "box_contrast_after")


def forget(checkpoint: str | Path, boxes_path: str | Path, out: str | Path, cfg: ForgetConfig,
           log: Callable[[str], None] = lambda m: None) -> dict:
    """Write ``out`` (before | after PNG), ``<out>.csv`` (a row per map) and ``<out>_summary.csv``."""
    from ..core.locks import output_lock

    L = load_generator(checkpoint, bn=cfg.bn, device=cfg.device)
    size = L.spec.image_size
    boxes = read_boxes(boxes_path, cfg.n, cfg.seed, size)
    name, layer, (channels, h, w) = g_layer(L.G, cfg.layer)
    if cfg.drop is not None and cfg.drop > channels:
        raise UserError(f"--drop {cfg.drop} exceeds the {channels} maps of layer {name}")
    out = Path(out)
    with output_lock(out):
        log(f"layer {name}: {channels} maps of {h}x{w}; {len(boxes)} boxed samples of grid n {cfg.n} seed {cfg.seed}")
        maps = capture(L.G, layer, latents(L.spec, cfg.n, cfg.seed, L.nz))
        probe = fit_probe(maps, boxes, size, cfg.C, cfg.holdout, cfg.drop, cfg.seed)
        before, after = with_and_without(L.G, layer, probe.dropped, latents(L.spec, cfg.show, cfg.show_seed, L.nz))
        # what dropping did to the boxed objects: how far the box's pixels stand out from the rest
        b_in, a_in = box_contrast(L.G, layer, probe.dropped, boxes, size, latents(L.spec, cfg.n, cfg.seed, L.nz))
        summary = {"checkpoint": str(checkpoint), "layer": name, "maps": channels, "dropped": len(probe.dropped),
                   "positives": probe.positives, "negatives": probe.negatives,
                   "heldout_images": " ".join(map(str, probe.heldout_images)),
                   "train_accuracy": f"{probe.train_accuracy:.4f}", "heldout_accuracy": f"{probe.heldout_accuracy:.4f}",
                   "box_contrast_before": f"{b_in:.4f}", "box_contrast_after": f"{a_in:.4f}"}
        write_csv_atomic(out.with_suffix(".csv"), MAP_COLUMNS,
                         [{"layer": name, "map": c, "weight": f"{probe.weights[c]:.6g}",
                           "dropped": int(c in probe.dropped)} for c in range(channels)])
        write_csv_atomic(out.with_name(out.stem + "_summary.csv"), SUMMARY_COLUMNS, [summary])
        cols = max(1, int(round(len(before) ** 0.5)))
        tiles = lambda x: grid([[image_tile(t) for t in x[i:i + cols]] for i in range(0, len(x), cols)])  # noqa: E731
        save_panels([("samples", tiles(before)), (f"{len(probe.dropped)} maps of {name} dropped", tiles(after))], out,
                    scale=3, caption=f"same z (seed {cfg.show_seed}); probe held-out accuracy "
                                     f"{probe.heldout_accuracy:.2f} on samples {summary['heldout_images']}")
    return summary


def box_contrast(G, layer, maps, boxes: dict, size: int, z: torch.Tensor) -> tuple[float, float]:
    """How much the boxes stand out, before and after dropping: the mean absolute difference of a box's
    pixels (grey level, in [-1, 1]) from the image's mean outside its boxes, over the boxed samples.
    Dark digits on light ground and light on dark both count."""
    before, after = with_and_without(G, layer, maps, z)
    res = []
    for imgs in (before, after):
        diffs = []
        for i, bx in boxes.items():
            m = inside((size, size), size, bx)
            lum = imgs[i].mean(0)
            if (~m).any():
                diffs.append(float((lum[m] - lum[~m].mean()).abs().mean()))
        res.append(sum(diffs) / max(len(diffs), 1))
    return res[0], res[1]
