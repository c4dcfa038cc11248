"""Our discriminators as feature sources: ``checkpoint:PATH`` and ``random:ARCH``.

Features are D's named blocks (``d1, d2, ...``), each post-activation output max-pooled to
the grid inside its forward hook (:class:`~dcgan_features.extract.hooks.FeatureExtractor`),
with BatchNorm re-estimated over train (``recompute``), stored (``running``) or per batch.

>>> src = random_init_model("dcgan32", width=2, seed=0)
>>> src.spec, src.plan("d2..d3", 4, "batch").layer_dims
('random:dcgan32', [64, 128])
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
from torch import nn

from ...nets.architectures import get_arch
from ...core.errors import UserError
from ..hooks import BN_MODES, FeatureExtractor, check_grid, parse_layers, to_model_input
from .base import FeatureSource, Plan, PrepareContext, recompute_bn_once, text_sha256


class Model(FeatureSource):
    """A discriminator and where it came from."""

    def __init__(self, D: nn.Module, arch: str, width: int, sha256: str, imported: bool = False, spec: str = "",
                 trained_on: str = "none"):
        self.D, self.arch, self.width, self.sha256, self.imported = D, arch, int(width), sha256, imported
        self.trained_on = trained_on
        self.architecture = arch
        self.spec = spec or f"random:{arch}"
        self.image_size = get_arch(arch).image_size

    def plan(self, layers: str, grid: int, bn: str) -> Plan:
        if bn not in BN_MODES:
            raise UserError(f"unknown bn mode {bn!r}; choose one of {', '.join(BN_MODES)}")
        if bn == "running" and self.imported:
            raise UserError("this checkpoint was imported from Theano and holds no BatchNorm running statistics; "
                            "use --bn recompute (the authors' way) or --bn batch")
        names = parse_layers(layers, [fi.name for fi in self.D.feature_info])
        check_grid(self.D, names, grid)
        info = {fi.name: fi for fi in self.D.feature_info}
        return Plan(names, [info[n].pooled_dim(grid) for n in names], bn)

    def work_size(self) -> int:
        from ...core.threads import model_size

        return model_size(self.D)

    def to(self, device: torch.device) -> "Model":
        # channels-last: faster convs on GPU and CPU (oneDNN), and vectorised pooling in the hooks
        self.D.to(device=device, memory_format=torch.channels_last)
        return self

    def prepare(self, plan: Plan, ctx: PrepareContext) -> None:
        recompute_bn_once(self.D, plan, ctx, _input, upto=plan.layers[-1])

    @contextlib.contextmanager
    def extractor(self, plan: Plan, grid: int, dtype: torch.dtype) -> Iterator:
        mode = "batch" if plan.bn_mode == "batch" else "running"
        with FeatureExtractor(self.D, plan.layers, grid, mode, dtype=dtype) as fx:
            yield lambda x: fx(_input(x))


def _input(x: torch.Tensor) -> torch.Tensor:
    return to_model_input(x, x.device).contiguous(memory_format=torch.channels_last)


def random_init_sha256(arch: str, width: int, seed: int) -> str:
    """The ``checkpoint_sha256`` of a random-init model: sha256 of ``random-init:<arch>:<width>:<seed>``."""
    return text_sha256(f"random-init:{arch}:{width}:{seed}")


def random_init_model(arch: str, width: int | None = None, seed: int = 0) -> Model:
    spec = get_arch(arch)
    width = spec.default_width if width is None else int(width)
    _, D = spec.build(width, seed=seed)
    return Model(D, arch, width, random_init_sha256(arch, width, seed), spec=f"random:{arch}")


def checkpoint_model(path: str | os.PathLike) -> Model:
    from ...nets.checkpoint import load_models, sha256, trained_on

    _, D, ckpt = load_models(path)
    return Model(D, ckpt["arch"], int(ckpt["width"]), sha256(path), bool(ckpt.get("imported", False)),
                 spec=f"checkpoint:{path}", trained_on=trained_on(ckpt))
