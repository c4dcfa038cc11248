"""``architectures`` and ``datasets``: what the registries hold and what is on disk."""

from __future__ import annotations

import click

from ..extract.config import ExtractConfig
from .group import MAX_IMAGE_SIZE, LazyHelp, cli


@cli.command("architectures")
@click.option("--width", type=int, default=None, help="Width to report (default: each architecture's own).")
@click.option("--grid", type=click.IntRange(min=1), default=ExtractConfig.grid, help="Pooling grid of the features.")
def architectures_cmd(width: int | None, grid: int) -> None:
    """List the architectures: input size, D blocks with their dims, total feature dim.

    \b
      dcgan-features architectures
      dcgan-features architectures --width 32
    """
    from ..nets.architectures import ARCHITECTURES

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


def _download_help() -> str:
    from ..data.registry import DATASETS

    can = [name for name, spec in DATASETS.items() if spec.downloadable]
    return (f"With --verify: fetch a missing public dataset with torchvision ({', '.join(can)}); for the "
            f"others, say where to get them.")


@cli.command("datasets")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the datasets (torchvision layout). [default: ./data]")
@click.option("--verify", "verify", metavar="NAME", default=None,
              help="Load every split of dataset NAME fully and report shapes and class counts.")
@click.option("--image-size", type=click.IntRange(8, MAX_IMAGE_SIZE), default=None,
              help="With --verify: resize to this size, as training does.")
@click.option("--download", is_flag=True, cls=LazyHelp, help_text=lambda: _download_help())
@click.pass_context
def datasets_cmd(ctx: click.Context, data_dir: str | None, verify: str | None, image_size: int | None,
                 download: bool) -> None:
    """List every dataset, where it is looked for, and whether it is present with split sizes.

    \b
      dcgan-features datasets
      dcgan-features datasets --data-dir /data/torchvision
      dcgan-features datasets --verify fashion-mnist --image-size 32
      dcgan-features datasets --verify cifar10 --download --data-dir data
      dcgan-features datasets --verify imagenet32 --data-dir /data/imagenet32
    """
    from ..data.registry import describe, get_dataset

    if download and verify is None:
        ctx.fail("--download needs --verify NAME (the dataset to fetch)")
    if verify is not None:
        spec = get_dataset(verify)
        for split in spec.splits:
            for line in spec.verify(data_dir, split, image_size=image_size, download_missing=download):
                click.echo(line)
        return
    for row in describe(data_dir):
        status = {True: "present", False: "MISSING", None: "-"}[row["present"]]
        splits = ", ".join(f"{k} {v}" for k, v in row["splits"].items()) or "(any folder of images)"
        click.echo(f"{row['name']:<14} {status:<8} {splits}")
        click.echo(f"{'':<14} {row['description']}")
        click.echo(f"{'':<14} looks in: {row['where']}")
