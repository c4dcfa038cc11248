"""``pixels``: the model input itself, flattened (the raw-pixel baseline).

The same values a D sees, 3 x S x S in [-1, 1] (grayscale as three equal channels),
at ``--image-size`` (default 32, the paper's D input).

>>> src = PixelSource()
>>> plan = src.plan("all", 4, "recompute")
>>> plan.layers, plan.layer_dims, plan.bn_mode
(['pixels'], [3072], 'none')
>>> with src.extractor(plan, 4, torch.float32) as fx:
...     fx(torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)).unique().tolist()
[1.0]
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..hooks import to_model_input
from .base import FeatureSource, Plan, no_layers, text_sha256


class PixelSource(FeatureSource):
    architecture = "pixels"

    def __init__(self, image_size: int | None = None):
        self.image_size = int(image_size or 32)
        self.spec = "pixels"
        self.sha256 = text_sha256(f"pixels:{self.image_size}")

    def work_size(self) -> int:
        return 0  # a copy per image: never worth a second thread

    def plan(self, layers: str, grid: int, bn: str) -> Plan:
        no_layers("pixels", layers)
        return Plan(["pixels"], [3 * self.image_size ** 2], grid=self.image_size)  # every pixel: no pooling

    @contextlib.contextmanager
    def extractor(self, plan: Plan, grid: int, dtype: torch.dtype) -> Iterator:
        yield lambda x: to_model_input(x, x.device).flatten(1).to(dtype)
