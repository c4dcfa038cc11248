"""Feature sources: everything ``extract --model SPEC`` can turn into an HDF5 feature file.

A SPEC is ``KIND`` or ``KIND:ARG``; :data:`SOURCES` maps each kind to its entry (a new
kind is one entry). Every source writes the same schema through the same pipeline
(:func:`dcgan_features.extract.run.extract`), so ``probe`` treats them alike.

>>> from_spec("random:dcgan32", SourceOptions(width=2)).plan("all", 4, "batch").layers
['d1', 'd2', 'd3']
>>> from_spec("pixels").plan("all", 4, "batch").layer_dims
[3072]
>>> from_spec("resnet:18")
Traceback (most recent call last):
dcgan_features.core.errors.UserError: unknown model kind 'resnet' in --model resnet:18; kinds: checkpoint:PATH, random:ARCH, pixels, kmeans:K, torchvision:NAME, python:MODULE:CALLABLE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...core.errors import UserError
from .base import NORMALIZE, FeatureSource, Plan, PrepareContext, SourceOptions

__all__ = ["SOURCES", "NORMALIZE", "SourceKind", "FeatureSource", "Plan", "PrepareContext", "SourceOptions",
           "from_spec"]


@dataclass(frozen=True)
class SourceKind:
    """One registry entry: how ``KIND[:ARG]`` builds its source, and which options it takes."""

    name: str
    arg: str | None  # the ARG's meaning in help texts (None: the kind takes no ARG)
    build: Callable[[str | None, SourceOptions], FeatureSource]
    options: tuple[str, ...] = ()  # SourceOptions fields this kind reads
    help: str = ""

    @property
    def usage(self) -> str:
        return f"{self.name}:{self.arg}" if self.arg else self.name


def _checkpoint(arg, opts):
    from .discriminator import checkpoint_model
    return checkpoint_model(arg)


def _random(arg, opts):
    from .discriminator import random_init_model
    return random_init_model(arg, opts.width, opts.seed)


def _pixels(arg, opts):
    from .pixels import PixelSource
    return PixelSource(opts.image_size)


def _kmeans(arg, opts):
    from .kmeans import KMeansSource, parse_k
    return KMeansSource(parse_k(arg), opts.seed, opts.image_size, opts.kmeans_from, init=opts.kmeans_init)


def _torchvision(arg, opts):
    from .generic import torchvision_source
    return torchvision_source(arg, opts)


def _python(arg, opts):
    from .generic import python_source
    return python_source(arg, opts)


SOURCES: dict[str, SourceKind] = {k.name: k for k in (
    SourceKind("checkpoint", "PATH", _checkpoint, (), "a checkpoint of `train` or `import-theano`"),
    SourceKind("random", "ARCH", _random, ("width", "seed"), "a seeded random-init D of an architecture"),
    SourceKind("pixels", None, _pixels, ("image_size",), "the model input itself, flattened"),
    SourceKind("kmeans", "K", _kmeans, ("seed", "image_size", "kmeans_from", "kmeans_init"),
               "the 1-layer K-means network of Coates, Lee & Ng (2011), fitted on train"),
    SourceKind("torchvision", "NAME", _torchvision, ("weights", "seed", "image_size", "normalize"),
               "a torchvision model: random init (seeded) or --weights FILE"),
    SourceKind("python", "MODULE:CALLABLE", _python, ("weights", "seed", "image_size", "normalize"),
               "any callable returning an nn.Module (MODULE importable or a .py path). This RUNS Python "
               "code: MODULE is imported (a .py file executed) and CALLABLE called, with your permissions, "
               "so name only code you trust; --weights is still read with weights_only"),
)}


def from_spec(spec: str, options: SourceOptions | None = None) -> FeatureSource:
    """Build the source a SPEC names; options it does not take are refused, naming them."""
    options = options or SourceOptions()
    kind_name, sep, arg = spec.partition(":")
    kind = SOURCES.get(kind_name.strip())
    if kind is None:
        raise UserError(f"unknown model kind {kind_name!r} in --model {spec}; kinds: "
                        f"{', '.join(k.usage for k in SOURCES.values())}")
    if kind.arg and not arg:
        raise UserError(f"--model {kind.name} needs its argument: --model {kind.usage}")
    if not kind.arg and sep:
        raise UserError(f"--model {kind.name} takes no argument, got --model {spec}")
    foreign = [flag for flag in options.given() if flag[2:].replace("-", "_") not in kind.options]
    if foreign:
        raise UserError(f"{', '.join(foreign)} do{'es' if len(foreign) == 1 else ''} not apply to --model "
                        f"{kind.usage}")
    return kind.build(arg or None, options)
