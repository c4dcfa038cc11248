"""The ``dcgan-features`` click group and what every command group shares.

Choice lists come from the registries (:class:`Names`, read when first needed so the
CLI imports no torch before a command runs); option defaults come from the config
dataclasses, so each default and each list exists once.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from ..core.errors import UserError

# Upper bounds of the size options: each far above any real use (the paper's widths are 64-128,
# its batch 128) and low enough that a typo cannot ask for tens of GB before failing
# (`arithmetic --neighbours 100000` once grew to 22 GB).
MAX_WIDTH, MAX_NZ, MAX_BATCH, MAX_IMAGE_SIZE, MAX_NEIGHBOURS, MAX_DRAWS = 1024, 4096, 65536, 1024, 64, 10000

# numpy's and torch's generators take seeds in [0, 2**32); a negative or larger --seed used to pass
# the CLI and fail deep inside (in reproduce only after its model and extract stages had run).
SEED = click.IntRange(0, 2**32 - 1)
# Adam moves each weight by about lr per step: above 1 a DCGAN's weights (about 0.02) are gone in
# one step, and from about 3e38 the optimizer's float32 arithmetic overflows (`--lr 1e300` crashed).
MAX_LR = 1.0
# arithmetic's --noise is a standard deviation added to z (itself of unit scale): beyond this the
# vectors are noise alone, and inf gives NaN images (once reported as success over black tiles).
MAX_NOISE = 100.0

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="dcgan-features")
def cli() -> None:
    """Train a DCGAN, turn its discriminator into a frozen feature extractor, and measure the
    features with linear probes (Radford, Metz & Chintala, 2015).

    \b
      dcgan-features architectures
      dcgan-features datasets --data-dir data
      dcgan-features train --dataset digits --arch dcgan32 --width 16 --epochs 5 --out runs/d
      dcgan-features extract --checkpoint runs/d/checkpoints/last.pt --dataset digits --out f.h5
      dcgan-features probe digits --features f.h5
    """


class Names(click.Choice):
    """A ``click.Choice`` over the names of a registry, ``"module:attribute"``, plus ``extra`` names.

    >>> Names("dcgan_features.core.devices:DEVICES").choices
    ('auto', 'cpu', 'cuda')
    """

    def __init__(self, registry: str, extra: tuple[str, ...] = ()):
        self.registry, self.extra, self.case_sensitive = registry, tuple(extra), True

    @property
    def choices(self) -> tuple[str, ...]:
        module, attr = self.registry.split(":")
        return tuple(getattr(importlib.import_module(module), attr)) + self.extra


class FiniteRange(click.FloatRange):
    """A ``click.FloatRange`` that also refuses nan (which passes every comparison of FloatRange).

    >>> FiniteRange(0, 1).convert("0.5", None, None)
    0.5
    """

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if rv != rv:
            self.fail(f"{value!r} is not a number; give a finite value in {self._describe_range()}", param, ctx)
        return rv


def out_file(ctx: click.Context, param: click.Parameter, value: str | None, parents: bool = False) -> str | None:
    """--out callback: a file in a writable folder (one that can be created, with ``parents``),
    checked before any work."""
    from ..core.atomic import check_output_file

    if value is not None:
        try:
            check_output_file(value, parents=parents)
        except UserError as e:
            raise click.BadParameter(str(e)) from None
    return value


def out_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--out callback for a run folder: a writable folder, or one that can be created."""
    from ..core.atomic import check_output_folder

    if value is not None:
        try:
            check_output_folder(value)
        except UserError as e:
            raise click.BadParameter(str(e)) from None
    return value


def device_option(default: str):
    """``--device auto|cpu|cuda``, its default from the command's config."""
    return click.option("--device", type=Names("dcgan_features.core.devices:DEVICES"), default=default,
                        help="Where to run: auto takes cuda when available.")


def threads_option(default: int | None = None):
    """``--threads N``: CPU threads for this command; unset, one thread for small work (core.threads)."""
    return click.option("--threads", type=click.IntRange(min=1), default=default,
                        help="CPU threads torch uses. [default: OMP_NUM_THREADS if set, else one thread for small "
                             "models and feature sets, torch's count above (results/threads.csv)]")


class LazyHelp(click.Option):
    """An option whose help text is built when help is shown (``help_text()``), e.g. from a registry
    that imports torch."""

    def __init__(self, *args, help_text, **kwargs):
        super().__init__(*args, **kwargs)
        self.help_text = help_text

    def get_help_record(self, ctx: click.Context):
        self.help = self.help_text()
        return super().get_help_record(ctx)
