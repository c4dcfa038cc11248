"""``kmeans:K``: the single-layer K-means network of Coates, Lee & Ng (2011) as a feature source.

The dictionary (ZCA mean and whitening, K centroids) is fitted on the train split of the
dataset being extracted (:mod:`~dcgan_features.extract.sources.kmeans_recipe` has the recipe), kept
in the partial file as soon as it exists (a resumed run encodes with the same one) and in
the finished file under ``/_source/kmeans``, so ``--kmeans-from FILE`` encodes another split
or dataset with it. Features: 4K per image (triangle code sum-pooled over 4 quadrants).
The file records the recipe's post-processing (``postprocess = "coates"``: every feature
standardised by the train mean and ``sqrt(var + 0.01)``, as ``kmeans_demo.m`` does before its
SVM), which ``probe`` applies by default.

>>> src = KMeansSource(8, image_size=12)
>>> src.plan("all", 4, "recompute").layer_dims
[32]
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, replace
from typing import Iterator

import torch

from ...core.errors import FeatureFileError, UserError
from ...core.memory import check_fits
from .base import FeatureSource, Plan, PrepareContext, no_layers, text_sha256
from .kmeans_recipe import KMEANS_INITS, Dictionary, KMeansConfig, encode, fit_dictionary

GROUP = "kmeans"  # under /_source in the feature file
CHANNELS = 3  # images reach sources as three channels (grayscale repeated, as for the D)


def parse_k(arg: str | None) -> int:
    try:
        k = int(arg or "")
    except ValueError:
        raise UserError(f"kmeans needs its number of centroids, e.g. kmeans:1600, got kmeans:{arg or ''}") from None
    if k < 1:
        raise UserError(f"K-means needs K >= 1 centroids, got kmeans:{k}")
    check_k(k, KMeansConfig())
    return k


def check_k(k: int, cfg: KMeansConfig, chunk: int = 1024) -> None:
    """Refuse a K the fit cannot use or hold: more centroids than sampled patches, or a dictionary
    and one chunk of distances (the fit's largest allocations) beyond the memory available.

    >>> check_k(10**6, KMeansConfig())
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: kmeans:1000000 asks for more centroids than the 400000 patches K-means is fitted on; use K <= 400000 (the recipe's K is 1600)
    """
    if k > cfg.n_patches:
        raise UserError(f"kmeans:{k} asks for more centroids than the {cfg.n_patches} patches K-means is fitted "
                        f"on; use K <= {cfg.n_patches} (the recipe's K is 1600)")
    d = CHANNELS * cfg.patch * cfg.patch
    # patches (n, d), centroids and their running sums (3 x (K, d)), one chunk of distances and
    # its argmax input (2 x (chunk, K)), float32; the features of one image are 4K floats more
    need = 4 * (cfg.n_patches * d + 3 * k * d + 2 * chunk * k + 4 * k)
    check_fits(need, f"kmeans:{k} (its dictionary and one chunk of distances)", "use a smaller K")


def _tensors(d: Dictionary) -> dict[str, torch.Tensor]:
    return {"mean": d.mean, "whitening": d.whitening, "centroids": d.centroids}


def dictionary_sha256(d: Dictionary) -> str:
    """sha256 of the dictionary's values (mean, whitening, centroids as float32): what a reuse is made from."""
    import hashlib

    h = hashlib.sha256()
    for t in _tensors(d).values():
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _dictionary(tensors: dict, attrs: dict, where: str = "the saved K-means state") -> Dictionary:
    """A :class:`Dictionary` from stored arrays and attrs, each checked: a file edited by hand (shapes,
    attrs, NaN) is one line naming what is wrong, not a traceback or NaN features."""
    def bad(what: str) -> FeatureFileError:
        return FeatureFileError(f"{where}: the K-means dictionary {what}; extract it again with kmeans:K")

    try:
        patch, channels, eps = int(attrs["patch"]), int(attrs["channels"]), float(attrs["norm_eps"])
    except (KeyError, TypeError, ValueError) as e:
        raise bad(f"has a missing or malformed attribute ({type(e).__name__}: {e})") from None
    if not (0 < patch <= 64 and 0 < channels <= 4 and math.isfinite(eps) and eps >= 0):
        raise bad(f"has attributes patch={patch}, channels={channels}, norm_eps={eps}, outside any recipe")
    mean, white, cent = (tensors[k] for k in ("mean", "whitening", "centroids"))
    d = channels * patch * patch
    if mean.shape != (d,) or white.ndim != 2 or white.shape[0] != d or not 0 < white.shape[1] <= d \
            or cent.ndim != 2 or cent.shape[1] != white.shape[1] or cent.shape[0] < 1:
        raise bad(f"has mean {tuple(mean.shape)}, whitening {tuple(white.shape)}, centroids {tuple(cent.shape)}; "
                  f"{patch}x{patch} patches of {channels} channels need ({d},), ({d}, r <= {d}), (K, r)")
    for name, t in (("mean", mean), ("whitening", white), ("centroids", cent)):
        if not t.is_floating_point() or not bool(torch.isfinite(t.float()).all()):
            raise bad(f"has NaN or infinite values in its {name} (or {name} is not floating point)")
    return Dictionary(mean.float(), white.float(), cent.float(), patch, channels, eps)


def load_dictionary(path: str) -> tuple[Dictionary, dict]:
    """The dictionary a ``kmeans`` extraction stored in its feature file, and its attrs."""
    import h5py

    from ..store import FeatureFile

    with FeatureFile(path) as ff:  # refuses what is not a complete feature file
        g = ff._f.get(f"_source/{GROUP}")
        if not isinstance(g, h5py.Group) or any(k not in g for k in ("mean", "whitening", "centroids")):
            raise FeatureFileError(f"{path!r} holds no K-means dictionary (made by `extract --model "
                                   f"{ff.meta.get('architecture', '?')}`, not kmeans:K)")
        for k in ("mean", "whitening", "centroids"):
            if not isinstance(g[k], h5py.Dataset) or g[k].dtype.kind != "f":
                raise FeatureFileError(f"{path!r}: the K-means dictionary's {k} is not a float array; extract "
                                       "it again with kmeans:K")
        check_fits(sum(g[k].size * g[k].dtype.itemsize for k in ("mean", "whitening", "centroids")),
                   f"the K-means dictionary of {path!r}", "check the file (edited by hand?)")
        tensors = {k: torch.from_numpy(g[k][...]) for k in ("mean", "whitening", "centroids")}
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}
    return _dictionary(tensors, attrs, repr(path)), attrs


class KMeansSource(FeatureSource):
    """K centroids fitted on train (or read from ``kmeans_from``), seeded by ``seed``."""

    architecture = "kmeans"
    postprocess = "coates"  # kmeans_demo.m: (x - train mean) / sqrt(train var + 0.01) before train_svm

    def __init__(self, k: int, seed: int = 0, image_size: int | None = None, kmeans_from: str | None = None,
                 config: KMeansConfig | None = None, init: str | None = None):
        self.cfg = replace(config or KMeansConfig(), k=int(k), seed=int(seed))
        if init is not None:
            self.cfg = replace(self.cfg, init=init)
        if self.cfg.init not in KMEANS_INITS:
            raise UserError(f"--kmeans-init must be one of {', '.join(KMEANS_INITS)}, got {self.cfg.init!r}")
        self.width = self.cfg.k
        self.image_size = int(image_size or 32)
        self.spec = f"kmeans:{self.cfg.k}"
        self.fitted: Dictionary | None = None
        if kmeans_from is not None:
            self.fitted, attrs = load_dictionary(kmeans_from)
            if (self.fitted.patch, self.fitted.channels) != (self.cfg.patch, CHANNELS):
                raise UserError(f"--kmeans-from {kmeans_from}: its dictionary has {self.fitted.patch}x"
                                f"{self.fitted.patch} patches of {self.fitted.channels} channels; this extraction "
                                f"needs {self.cfg.patch}x{self.cfg.patch} of {CHANNELS}")
            if self.fitted.k != self.cfg.k:
                raise UserError(f"--kmeans-from {kmeans_from} holds K = {self.fitted.k} centroids, "
                                f"not the {self.cfg.k} of kmeans:{self.cfg.k}")
            self.sha256 = dictionary_sha256(self.fitted)
        else:  # fitted on the train split of the dataset the file names, with this configuration
            self.sha256 = text_sha256(f"kmeans:{sorted(asdict(self.cfg).items())}:{self.image_size}")
        self.device = torch.device("cpu")

    def plan(self, layers: str, grid: int, bn: str) -> Plan:
        no_layers(self.spec, layers)
        return Plan(["triangle"], [4 * self.cfg.k], grid=2)  # the recipe's 4 quadrants, whatever --grid says

    def needs_train(self, plan: Plan) -> bool:
        return self.fitted is None

    def to(self, device: torch.device) -> "KMeansSource":
        self.device = device
        return self

    def prepare(self, plan: Plan, ctx: PrepareContext) -> None:
        saved = ctx.saved(GROUP)
        if saved is not None:
            self.fitted = _dictionary(*saved)
            return
        if self.fitted is None:
            self.fitted = fit_dictionary(ctx.images["train"], self.cfg, ctx.device, ctx.log)
        d = self.fitted
        attrs = {**asdict(self.cfg), "channels": d.channels, "image_size": self.image_size,
                 "dictionary_sha256": dictionary_sha256(d)}
        ctx.save(GROUP, {k: v.cpu() for k, v in _tensors(d).items()}, attrs=attrs, keep=True)

    @contextlib.contextmanager
    def extractor(self, plan: Plan, grid: int, dtype: torch.dtype) -> Iterator:
        d = self.fitted.to(self.device)
        budget = 1 << (28 if self.device.type == "cuda" else 21)  # distances held at once (1 GB / 8 MB: cache-sized)
        yield lambda x: encode(x, d, budget).to(dtype)
