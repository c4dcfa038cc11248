"""The ``dcgan-features`` command: parse, check, call the library, nothing else.

Every user error (a :class:`~dcgan_features.errors.UserError` from the library or a
click usage error) becomes one ``error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import UserError

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


# ------------------------------------------------------------------ architectures


@cli.command("architectures")
@click.option("--width", type=int, default=None, help="Width to report (default: each architecture's own).")
@click.option("--grid", type=click.IntRange(min=1), default=4, help="Pooling grid of the features.")
def architectures_cmd(width: int | None, grid: int) -> None:
    """List the architectures: input size, D blocks with their dims, total feature dim.

    \b
      dcgan-features architectures
      dcgan-features architectures --width 32
    """
    from .architectures import ARCHITECTURES

    for spec in ARCHITECTURES.values():
        w = spec.default_width if width is None else width
        info = spec.feature_info(w)
        total = sum(fi.pooled_dim(grid) for fi in info)
        click.echo(f"{spec.name}: input 3x{spec.image_size}x{spec.image_size}, width {w}, "
                   f"z={spec.nz} {spec.prior} -- {spec.description}")
        for fi in info:
            click.echo(f"  {fi.name}: {fi.channels:>5} x {fi.spatial:>2} x {fi.spatial:<2} "
                       f"-> pooled {grid}x{grid}: {fi.pooled_dim(grid):>6}")
        click.echo(f"  total feature dim: {total}")


# ---------------------------------------------------------------------- datasets


@cli.command("datasets")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the datasets (torchvision layout). [default: ./data]")
@click.option("--verify", "verify", metavar="NAME", default=None,
              help="Load every split of dataset NAME fully and report shapes and class counts.")
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="With --verify: resize to this size, as training does.")
@click.option("--download", is_flag=True,
              help="With --verify: fetch a missing public dataset (cifar10, svhn, fashion-mnist) with torchvision.")
@click.pass_context
def datasets_cmd(ctx: click.Context, data_dir: str | None, verify: str | None, image_size: int | None,
                 download: bool) -> None:
    """List every dataset, where it is looked for, and whether it is present with split sizes.

    \b
      dcgan-features datasets
      dcgan-features datasets --data-dir /data/torchvision
      dcgan-features datasets --verify fashion-mnist --image-size 32
      dcgan-features datasets --verify cifar10 --download --data-dir data
    """
    from .data import describe, get_dataset, load

    if download and verify is None:
        ctx.fail("--download needs --verify NAME (the dataset to fetch)")
    if verify is not None:
        for split in get_dataset(verify).splits:
            ds = load(verify, split, data_dir=data_dir, image_size=image_size, download_missing=download)
            counts = ds.labels[ds.labels >= 0].bincount().tolist()
            click.echo(f"{verify} {split}: images {tuple(ds.images.shape)} {ds.images.dtype}, "
                       f"labels per class {counts}")
        return
    for row in describe(data_dir):
        status = {True: "present", False: "MISSING", None: "-"}[row["present"]]
        splits = ", ".join(f"{k} {v}" for k, v in row["splits"].items()) or "(any folder of images)"
        click.echo(f"{row['name']:<14} {status:<8} {splits}")
        click.echo(f"{'':<14} {row['description']}")
        click.echo(f"{'':<14} looks in: {row['where']}")


# ------------------------------------------------------------------------- entry


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line on stderr and a non-zero exit for any user error."""
    try:
        rv = cli.main(args=argv, prog_name="dcgan-features", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        hint = f" (see: {e.ctx.command_path} --help)" if isinstance(e, click.UsageError) and e.ctx else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
