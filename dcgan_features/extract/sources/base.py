"""What every feature source gives the extraction pipeline.

A :class:`FeatureSource` turns uint8 images (N, 3, S, S) into one feature row per image.
:func:`dcgan_features.extract.run.extract` asks it for its metadata (what the HDF5 file
records), lets it :meth:`~FeatureSource.prepare` (re-estimate BatchNorm statistics, fit a
K-means dictionary) with a place to keep state across a resume, then streams batches
through the function its :meth:`~FeatureSource.extractor` context returns. The file
schema, the resumable writer and the atomic rename are the pipeline's, the same for
every source.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from ...core.errors import UserError

if TYPE_CHECKING:  # torch-free at import: the CLI reads the registry without loading torch
    import torch

NORMALIZE = ("minus1to1", "imagenet", "unit")  # how generic models are fed (sources.generic.normalize)


@dataclass(frozen=True)
class SourceOptions:
    """Options of ``extract`` that some source kinds take (``None``: the kind's default)."""

    seed: int = 0
    width: int | None = None
    weights: str | None = None
    image_size: int | None = None
    normalize: str | None = None
    kmeans_from: str | None = None
    kmeans_init: str | None = None  # kmeans_recipe.KMEANS_INITS; None: run_kmeans.m's randn

    def given(self) -> list[str]:
        """Flag names of the options set away from their defaults."""
        return [f"--{k.replace('_', '-')}" for k, v in vars(self).items()
                if v is not None and not (k == "seed" and v == 0)]


@dataclass
class Plan:
    """The features a source will write: layer names, their dims, the BN mode and the grid recorded."""

    layers: list[str]
    layer_dims: list[int]
    bn_mode: str = "none"
    grid: int | None = None  # None: the --grid asked for; sources with their own pooling set it
    skipped: list[str] = field(default_factory=list)  # --layer all: layers left out, narrower than the grid

    @property
    def dim(self) -> int:
        return int(sum(self.layer_dims))


@dataclass
class PrepareContext:
    """What :meth:`FeatureSource.prepare` may use.

    ``batches(split)`` yields the uint8 images of a split in extraction batches on
    ``device``; ``bn_batches()``, when set, the batches BatchNorm statistics are re-estimated
    over instead of the train split's (``--bn authors``); ``saved(name)`` returns tensors (and attrs) a previous, interrupted run
    kept with ``save(name, tensors, attrs, keep)`` (``keep``: also in the final file).
    """

    images: Mapping[str, torch.Tensor]
    device: torch.device
    batches: Callable[[str], Iterator[torch.Tensor]]
    saved: Callable[[str], tuple[dict, dict] | None]
    save: Callable[..., None]
    log: Callable[[str], None] = field(default=lambda m: None)
    bn_batches: Callable[[], Iterator[torch.Tensor]] | None = None
    # Under torchrun (dcgan_features.extract.distributed) ``batches("train")`` yields this rank's
    # share of the train batches, and ``gather`` turns rows computed per batch of it into the
    # rows of every batch, in order (BN statistics: one process's arithmetic on every rank).
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None
    progress: bool = False  # show the preparation's passes (core.progress: a bar, or lines off a terminal)


class FeatureSource:
    """Base of every source; subclasses set the attributes and override what they need.

    Attributes: ``spec`` (the SPEC it was made from, recorded in the file), ``architecture``
    and ``width`` (the file's ``architecture``/``width`` attrs), ``image_size`` (images are
    loaded at this size), ``sha256`` (of the weights, or of what determines them), ``trained_on``
    (the dataset its weights were trained on; ``none`` for pixels and random weights),
    ``postprocess`` (what its recipe does to the features before a probe; ``""`` nothing).
    """

    spec: str = ""
    architecture: str = ""
    width: int = 0
    image_size: int = 32
    sha256: str = ""
    imported: bool = False  # a Theano import: no running BN statistics
    trained_on: str = "none"  # the dataset its weights were trained on (the file's trained_on attr)
    # what its recipe does to the features before a linear probe (the file's postprocess attr,
    # applied by `probe` by default; probes.rows.POSTPROCESS): "" none, "coates" K-means's
    postprocess: str = ""

    def plan(self, layers: str, grid: int, bn: str) -> Plan:
        """Resolve ``--layer``/``--grid``/``--bn`` for this source (raise UserError if invalid)."""
        raise NotImplementedError

    def needs_train(self, plan: Plan) -> bool:
        """Whether :meth:`prepare` needs the train split (loaded even when not extracted)."""
        return plan.bn_mode in ("recompute", "authors")

    def prepare(self, plan: Plan, ctx: PrepareContext) -> None:
        """Work before extraction (fits, BN statistics); keep its result with ``ctx.save``."""

    def to(self, device: torch.device) -> "FeatureSource":
        return self

    def default_bn(self) -> str | None:
        """The ``--bn`` mode when none is given: None for the dataset's (re-estimate, the paper's way);
        a pretrained model with running statistics keeps its own (``running``)."""
        return None

    def work_size(self) -> int | None:
        """The size the CPU thread policy compares (``core.threads``): parameters of the model;
        None (torch's own thread count) for a source without one."""
        return None

    @contextlib.contextmanager
    def extractor(self, plan: Plan, grid: int, dtype: torch.dtype) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        """A function uint8 batch on the device -> (B, plan.dim) features in ``dtype``."""
        raise NotImplementedError
        yield  # pragma: no cover


def recompute_bn_once(model, plan: Plan, ctx: PrepareContext, to_input: Callable, **kw) -> None:
    """``--bn recompute``: re-estimate BN over train once; a resumed run reuses the saved statistics.
    ``--bn authors``: the same over ``ctx.bn_batches()``, with biased batch variances."""
    from ..hooks import bn_state, recompute_bn_stats, recomputed_batchnorms

    if plan.bn_mode not in ("recompute", "authors"):
        return
    if not recomputed_batchnorms(model, kw.get("upto"), kw.get("forward")):
        # e.g. --layer d1: the first block of every DCGAN D has no BatchNorm, so there is nothing
        # to re-estimate (and no batch to run)
        ctx.log("no BatchNorm layer in the chosen blocks: nothing to re-estimate")
        return
    saved = ctx.saved("bn_stats")
    if saved is not None:
        model.load_state_dict({**model.state_dict(), **saved[0]})
        return
    if ctx.bn_batches is None:
        ctx.log(f"re-estimating BatchNorm statistics over {ctx.images['train'].shape[0]} train images")
    batches = ctx.bn_batches() if ctx.bn_batches is not None else ctx.batches("train")
    # one bar over the train images (this process's pass over all of them: not the authors' subset, not a
    # torchrun rank's share)
    from ...core.progress import Progress

    bar = Progress(ctx.images["train"].shape[0], "BatchNorm statistics", unit="img",
                   mode="auto" if ctx.progress and ctx.gather is None and ctx.bn_batches is None else False)

    def counted():
        for x in batches:
            yield to_input(x)
            bar.update(x.shape[0])

    # the authors' batches are every rank's whole list (no gather); train batches are a rank's share
    with bar:
        recompute_bn_stats(model, counted(), biased=plan.bn_mode == "authors",
                           gather=ctx.gather if ctx.bn_batches is None else None, **kw)
    ctx.save("bn_stats", bn_state(model))


def text_sha256(text: str) -> str:
    """sha256 of a text: what identifies a source made without a weights file."""
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def no_layers(kind: str, layers: str, grid: int | None = None) -> None:
    """Sources with one fixed feature set accept only ``--layer all``."""
    if layers.strip() != "all":
        raise UserError(f"{kind} has one fixed feature set; --layer applies to models (checkpoint, random, "
                        f"torchvision, python), got --layer {layers}")
