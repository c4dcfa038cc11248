"""Does G copy its training set? Each sample's nearest training images, and how near they are
compared with how near training images are to each other (the memorisation check).

For ``n`` samples (the ``sample`` grid of ``seed``), :func:`measure` streams the training
set once, in chunks, and keeps each sample's ``k`` nearest training images in pixel space
(Euclidean, images in [-1, 1]) and in D-feature space (cosine distance over every D block,
4x4 max-pooled, BN re-estimated on train as ``extract`` does). In the same pass it finds,
for ``reference`` random training images, their nearest *other* training image: the
distance at which two different real images already sit. A G that copies shows up as
samples closer to a training image than the median such pair: :attr:`Memorisation.fraction`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..core.errors import UserError
from .config import NeighboursConfig
from .nearest import Search

SPACES = ("pixel", "feature")


@dataclass
class Memorisation:
    """Per space: each sample's neighbours (n, k) and distances, and the reference pairs' distances (R,)."""

    samples: torch.Tensor  # (n, 3, S, S) in [-1, 1]
    indices: dict[str, torch.Tensor]
    distances: dict[str, torch.Tensor]
    reference: dict[str, torch.Tensor]  # nearest-other-train distance of each reference image

    def median_pair(self, space: str) -> float:
        return float(self.reference[space].median())

    def fraction(self, space: str) -> float:
        """Fraction of samples whose nearest training image is nearer than the median train pair."""
        return float((self.distances[space][:, 0] < self.median_pair(space)).float().mean())


def measure(samples: torch.Tensor, train: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor] | None,
            k: int, reference: torch.Tensor, chunk: int, device: torch.device | str = "cpu") -> Memorisation:
    """Stream ``train`` (uint8) in chunks; ``features`` maps model input to D features (None: pixels only)."""
    from ..extract.hooks import to_model_input

    spaces = SPACES if features is not None else SPACES[:1]
    q = {"pixel": samples.to(device)}
    ref_x = to_model_input(train[reference], device)
    r = {"pixel": ref_x}
    if features is not None:
        q["feature"], r["feature"] = features(q["pixel"]), features(ref_x)
    ref_idx = reference.to(device)
    near = {s: Search(q[s], k, cosine=s == "feature") for s in spaces}
    pairs = {s: Search(r[s], 1, cosine=s == "feature", exclude=ref_idx) for s in spaces}
    for lo in range(0, len(train), chunk):
        x = to_model_input(train[lo:lo + chunk], device)
        rows = {"pixel": x}
        if features is not None:
            rows["feature"] = features(x)
        for s in spaces:
            near[s].add(rows[s], lo)
            pairs[s].add(rows[s], lo)
    pixel_rows = lambda i: to_model_input(train[i], device)  # noqa: E731
    dist = {s: near[s].distances for s in spaces}
    dist["pixel"] = near["pixel"].exact(pixel_rows)
    order = dist["pixel"].argsort(dim=1, stable=True)  # exact distances may swap near-ties
    idx = {s: near[s].indices for s in spaces}
    idx["pixel"], dist["pixel"] = idx["pixel"].gather(1, order), dist["pixel"].gather(1, order)
    ref = {s: pairs[s].distances[:, 0] for s in spaces}
    ref["pixel"] = pairs["pixel"].exact(pixel_rows)[:, 0]
    return Memorisation(samples.cpu(), {s: v.cpu() for s, v in idx.items()}, {s: v.cpu() for s, v in dist.items()},
                        {s: v.cpu() for s, v in ref.items()})


def check_sizes(cfg: NeighboursConfig, n_train: int) -> None:
    if n_train < 2:
        raise UserError(f"{cfg.dataset} train has {n_train} images; the check needs at least 2")
    if cfg.k > n_train:
        raise UserError(f"--k {cfg.k} exceeds the {n_train} training images")


@contextlib.contextmanager
def d_features(D: torch.nn.Module, train: torch.Tensor, cfg: NeighboursConfig, device: torch.device):
    """Inside the block, D's every-block features (BN re-estimated on the first ``bn_images``
    training images, as ``extract``) as a function of model input."""
    from ..extract.hooks import FeatureExtractor, batchnorms, recompute_bn_stats, to_model_input

    D = D.to(device)
    if batchnorms(D):
        sub = train[:cfg.bn_images]
        recompute_bn_stats(D, (to_model_input(sub[i:i + 256], device) for i in range(0, len(sub), 256)))
    with FeatureExtractor(D, "all", 4, "running") as fx:
        yield lambda x: torch.cat([fx(x[i:i + 1024]).float() for i in range(0, len(x), 1024)])


def neighbours(checkpoint: str | Path, out: str | Path, cfg: NeighboursConfig,
               log: Callable[[str], None] = lambda m: None) -> dict:
    """Write ``out`` (grid PNG), ``<out>_distances.png``, ``<out>.csv`` and ``<out>_summary.csv``."""
    from ..core.devices import resolve_device
    from ..core.locks import output_lock
    from ..data.registry import load
    from ..nets import checkpoint as ckpts
    from . import generate
    from .neighbours_fig import write_outputs

    device = resolve_device(cfg.device)
    L = generate.load_generator(checkpoint, bn=cfg.bn, device=str(device))
    _, D = ckpts.models_from_payload(ckpts.load(checkpoint), str(checkpoint))
    out = Path(out)
    with output_lock(out):
        train = load(cfg.dataset, "train", data_dir=cfg.data_dir, image_size=L.spec.image_size).images
        train = train[:cfg.limit] if cfg.limit is not None else train
        check_sizes(cfg, len(train))
        log(f"re-estimating D's BatchNorm statistics over {min(cfg.bn_images, len(train))} training images")
        _, samples = generate.sample(L.G, L.spec, cfg.n, cfg.seed, nz=L.nz)
        g = torch.Generator().manual_seed(cfg.seed)
        ref = torch.randperm(len(train), generator=g)[:min(cfg.reference, len(train))]
        with d_features(D, train, cfg, device) as feats, torch.no_grad():
            log(f"{cfg.n} samples and {len(ref)} reference images against {len(train)} training images")
            res = measure(samples, train, feats, cfg.k, ref, cfg.chunk, device)
        summary = write_outputs(out, res, train, cfg, str(checkpoint))
    return summary
