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
    """D's block ``name`` (a D block such as ``d3``, or any module name); default: the last block
    (for another model: the activation after its last Conv2d, or that conv)."""
    blocks = list(getattr(D, "block_names", []))
    if name is None:
        name = blocks[-1] if blocks else _last_conv(D)
    if name in blocks:
        return name, D.blocks[name]
    return name, find_module(D, name, "D", blocks)


def _last_conv(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise UserError("the model has no Conv2d layer; pass --block")
    mods = list(model.named_modules())
    at = [n for n, _ in mods].index(names[-1])
    nxt = [n for n, m in mods[at + 1:] if not isinstance(m, nn.modules.batchnorm._BatchNorm)][:1]
    follows = nxt and isinstance(dict(mods)[nxt[0]], (nn.ReLU, nn.LeakyReLU))
    return nxt[0] if follows else names[-1]


def check_request(D: nn.Module, module: nn.Module, name: str, image_size: int, maps: list[int],
                  to_input: Callable) -> int:
    """Fail before any work: the block has spatial maps and every map exists; returns the channel count."""
    D.eval()
    x = to_input(torch.full((2, 3, image_size, image_size), 128, dtype=torch.uint8), "cpu")
    c, _, _ = spatial_shape(D, module, x, f"block {name!r}")
    bad = [m for m in maps if not 0 <= m < c]
    if bad:
        raise UserError(f"--maps {bad[0]} is out of range: block {name!r} has maps 0..{c - 1}")
    return c


def recompute_bn(D: nn.Module, images: torch.Tensor, cfg: VisualizeConfig, device: torch.device,
                 to_input: Callable) -> None:
    """Re-estimate D's BatchNorm statistics on the first ``cfg.bn_images`` images."""
    from ..extract.hooks import batchnorms, recompute_bn_stats

    if not batchnorms(D):
        return
    sub = images[:cfg.bn_images]
    batches = (to_input(sub[i:i + cfg.batch_size], device) for i in range(0, len(sub), cfg.batch_size))
    # our D runs its blocks; any other module its own forward
    recompute_bn_stats(D, batches, forward=None if hasattr(D, "blocks") else D)


def analyse(D: nn.Module, name: str, module: nn.Module, images: torch.Tensor, maps: list[int], label: str,
            cfg: VisualizeConfig, device: torch.device, to_model_input: Callable) -> Side:
    """Top-k responses of ``maps`` over ``images``, each traced back with guided backprop."""
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


@dataclass
class Subject:
    """One network to look into: how stored images become its input, and its name in the figure."""

    label: str
    model: nn.Module
    to_input: Callable  # (uint8 batch, device) -> model input
    recompute: bool  # re-estimate its BatchNorm statistics on the images first
    title: str


def visualize(checkpoint: str | Path | None, out: str | Path, cfg: VisualizeConfig,
              log: Callable[[str], None] = lambda m: None, model_spec: str | None = None,
              options=None) -> dict:
    """Write ``out`` (PNG) and ``out`` with ``.csv`` (the numbers behind it); returns a summary.

    The network is CHECKPOINT's D, or with ``model_spec`` an ``extract --model`` source with conv
    layers (``torchvision:NAME``, ``python:MODULE:CALLABLE``; ``options`` its SourceOptions)."""
    from ..core.devices import resolve_device
    from ..core.locks import output_lock

    if cfg.bn not in BN_CHOICES:
        raise UserError(f"--bn {cfg.bn!r}: choose one of {', '.join(BN_CHOICES)}")
    if (checkpoint is None) == (model_spec is None):
        raise UserError("give either CHECKPOINT or --model SPEC")
    subjects, size = (_checkpoint_subjects(checkpoint, cfg) if model_spec is None
                      else _module_subjects(model_spec, options, cfg))
    first = subjects[0].model
    name, module = block_module(first, cfg.block)
    maps = list(cfg.maps) if cfg.maps is not None else list(range(cfg.n_maps))
    channels = check_request(first, module, name, size, maps, subjects[0].to_input)
    if cfg.maps is None and cfg.n_maps > channels:
        maps = list(range(channels))
    device = resolve_device(cfg.device)
    out = Path(out)
    with output_lock(out):
        images = load_images(cfg, size)
        sides = []
        for sub in subjects:
            model = sub.model.to(device)
            if sub.recompute:
                log(f"{sub.label}: re-estimating BatchNorm statistics over {min(cfg.bn_images, len(images))} images")
                recompute_bn(model, images, cfg, device, sub.to_input)
            log(f"{sub.label}: top {cfg.top_k} responses of {len(maps)} maps of {name} over {len(images)} images")
            sides.append(analyse(model, name, block_module(model, name)[1], images, maps, sub.label, cfg, device,
                                 sub.to_input))
        write_csv(out.with_suffix(".csv"), sides)
        write_figure(out, sides, images, subjects[0].title)
    return {"block": name, "maps": maps, "images": len(images), "sides": [s.label for s in sides],
            "png": str(out), "csv": str(out.with_suffix(".csv"))}


def _checkpoint_subjects(checkpoint: str | Path, cfg: VisualizeConfig) -> tuple[list[Subject], int]:
    from ..extract.hooks import to_model_input
    from ..nets import checkpoint as ckpts
    from ..nets.architectures import build, get_arch

    _, D, ck = ckpts.load_models(checkpoint)
    if cfg.bn == "running" and ck.get("imported"):
        raise UserError(f"checkpoint {str(checkpoint)!r} holds imported weights without BatchNorm statistics; "
                        "use --bn recompute")
    subjects = [Subject("trained D", D, to_model_input, cfg.bn == "recompute", ck["arch"])]
    if cfg.random_baseline:
        _, R = build(ck["arch"], width=ck["width"], nz=ck["nz"], seed=cfg.seed)
        subjects.append(Subject("random D", R, to_model_input, True, ck["arch"]))  # no statistics of its own
    return subjects, get_arch(ck["arch"]).image_size


def _module_subjects(spec: str, options, cfg: VisualizeConfig) -> tuple[list[Subject], int]:
    """An ``extract --model`` module and, as the baseline, a copy with every layer re-initialised."""
    import copy

    from ..extract.sources import SourceOptions, from_spec
    from ..extract.sources.generic import ModuleSource, normalize

    src = from_spec(spec, options or SourceOptions())
    if not isinstance(src, ModuleSource):
        raise UserError(f"--model {spec}: visualize takes torchvision: or python: models; for our D pass the "
                        "checkpoint itself")
    how = src.normalize
    to_input = lambda b, device: normalize(b.to(device), how)  # noqa: E731
    given = Subject("given model", src.module, to_input, cfg.bn == "recompute", spec)
    subjects = [given]
    if cfg.random_baseline:
        R = copy.deepcopy(src.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            for m in R.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        subjects.append(Subject("random init", R, to_input, True, spec))
    return subjects, src.image_size
