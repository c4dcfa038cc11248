"""What D's feature maps respond to (paper Fig. 5): top responses over a dataset and their
guided-backpropagation maps, beside the same for a random D of the same architecture and width.

For each chosen map of a D block, :func:`~.responses.top_responses` streams the dataset
and keeps the ``k`` images with the largest response (each image's maximum over the map's
positions). Each response is traced back to the input with guided backpropagation
(:mod:`.guided`); the figure shows, per map and rank, the crop of the image under the
response's receptive field (:mod:`.receptive`) above the same crop of its guided map.

BatchNorm: a D is run in eval mode, so images never interact; its statistics are
re-estimated on the first ``bn_images`` images of the split (``bn="recompute"``, as
``extract`` does; the only choice for imported weights and for the random D) or taken
from the checkpoint (``bn="running"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.errors import UserError
from .config import VisualizeConfig
from .fig5 import write_csv, write_figure
from .guided import find_module, guided_gradients, run_to, spatial_shape
from .receptive import RF
from .responses import Top, top_responses

BN_CHOICES = ("recompute", "running")


@dataclass
class Side:
    """One D's answer: the top responses of the chosen maps, their guided maps and receptive fields."""

    label: str
    block: str
    top: Top
    grads: torch.Tensor  # (M, k, 3, H, W)
    boxes: list[list[tuple[int, int, int, int]]]


def block_module(D: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """D's block ``name`` (a D block such as ``d3``, or any module name); default: the last block."""
    blocks = list(getattr(D, "block_names", []))
    if name is None:
        if not blocks:
            raise UserError("the model names no blocks; pass --block")
        name = blocks[-1]
    if name in blocks:
        return name, D.blocks[name]
    return name, find_module(D, name, "D", blocks)


def check_request(D: nn.Module, module: nn.Module, name: str, image_size: int, maps: list[int]) -> int:
    """Fail before any work: the block has spatial maps and every map exists; returns the channel count."""
    D.eval()
    c, _, _ = spatial_shape(D, module, torch.zeros(2, 3, image_size, image_size), f"block {name!r}")
    bad = [m for m in maps if not 0 <= m < c]
    if bad:
        raise UserError(f"--maps {bad[0]} is out of range: block {name!r} has maps 0..{c - 1}")
    return c


def recompute_bn(D: nn.Module, images: torch.Tensor, cfg: VisualizeConfig, device: torch.device) -> None:
    """Re-estimate D's BatchNorm statistics on the first ``cfg.bn_images`` images."""
    from ..extract.hooks import batchnorms, recompute_bn_stats, to_model_input

    if not batchnorms(D):
        return
    sub = images[:cfg.bn_images]
    recompute_bn_stats(D, (to_model_input(sub[i:i + cfg.batch_size], device)
                           for i in range(0, len(sub), cfg.batch_size)))


def analyse(D: nn.Module, name: str, module: nn.Module, images: torch.Tensor, maps: list[int], label: str,
            cfg: VisualizeConfig, device: torch.device) -> Side:
    """Top-k responses of ``maps`` over ``images``, each traced back with guided backprop."""
    from ..extract.hooks import to_model_input

    D.eval().requires_grad_(False)
    top = top_responses(lambda x: run_to(D, module, x), images, maps, cfg.top_k, cfg.batch_size,
                        to_model_input, device)
    M, k = top.images.shape
    flat_img = top.images.flatten()
    chans = torch.as_tensor(maps).repeat_interleave(k)
    pos = top.positions.reshape(-1, 2)
    grads = torch.cat([guided_gradients(D, module, to_model_input(images[flat_img[i:i + 256]], device),
                                        chans[i:i + 256].to(device), pos[i:i + 256, 0].to(device),
                                        pos[i:i + 256, 1].to(device)).cpu()
                       for i in range(0, len(flat_img), 256)])
    rf = RF(D, module, tuple(images.shape[1:]))
    boxes = [[rf.box(*top.positions[m, r].tolist()) for r in range(k)] for m in range(M)]
    return Side(label, name, top, grads.reshape(M, k, *grads.shape[1:]), boxes)


def load_images(cfg: VisualizeConfig, image_size: int) -> torch.Tensor:
    """The split's uint8 images at the model's size (first ``cfg.limit``), checked against ``top_k``."""
    from ..data.registry import load

    images = load(cfg.dataset, cfg.split, data_dir=cfg.data_dir, image_size=image_size).images
    if cfg.limit is not None:
        images = images[:cfg.limit]
    if len(images) < cfg.top_k:
        raise UserError(f"--top-k {cfg.top_k} needs at least that many images; {cfg.dataset} {cfg.split} "
                        f"has {len(images)}")
    return images


def visualize(checkpoint: str | Path, out: str | Path, cfg: VisualizeConfig,
              log: Callable[[str], None] = lambda m: None) -> dict:
    """Write ``out`` (PNG) and ``out`` with ``.csv`` (the numbers behind it); returns a summary."""
    from ..core.devices import resolve_device
    from ..core.locks import output_lock
    from ..nets import checkpoint as ckpts
    from ..nets.architectures import build, get_arch

    if cfg.bn not in BN_CHOICES:
        raise UserError(f"--bn {cfg.bn!r}: choose one of {', '.join(BN_CHOICES)}")
    G, D, ck = ckpts.load_models(checkpoint)
    if cfg.bn == "running" and ck.get("imported"):
        raise UserError(f"checkpoint {str(checkpoint)!r} holds imported weights without BatchNorm statistics; "
                        "use --bn recompute")
    size = get_arch(ck["arch"]).image_size
    name, module = block_module(D, cfg.block)
    maps = list(cfg.maps) if cfg.maps is not None else list(range(cfg.n_maps))
    channels = check_request(D, module, name, size, maps)
    if cfg.maps is None and cfg.n_maps > channels:
        maps = list(range(channels))
    device = resolve_device(cfg.device)
    out = Path(out)
    with output_lock(out):
        images = load_images(cfg, size)
        sides = []
        for label, model, recompute in _models(D, ck, cfg, build):
            model = model.to(device)
            if recompute:
                log(f"{label}: re-estimating BatchNorm statistics over {min(cfg.bn_images, len(images))} images")
                recompute_bn(model, images, cfg, device)
            log(f"{label}: top {cfg.top_k} responses of {len(maps)} maps of {name} over {len(images)} images")
            sides.append(analyse(model, name, block_module(model, name)[1], images, maps, label, cfg, device))
        write_csv(out.with_suffix(".csv"), sides)
        write_figure(out, sides, images, ck["arch"])
    return {"block": name, "maps": maps, "images": len(images), "sides": [s.label for s in sides],
            "png": str(out), "csv": str(out.with_suffix(".csv"))}


def _models(D: nn.Module, ck: dict, cfg: VisualizeConfig, build):
    yield "trained D", D, cfg.bn == "recompute"
    if cfg.random_baseline:
        _, R = build(ck["arch"], width=ck["width"], nz=ck["nz"], seed=cfg.seed)
        yield "random D", R, True  # a random D has no statistics of its own
