"""Looking inside the networks (paper section 6 and the memorisation check of section 4):
``visualize``, ``neighbours``, ``forget``."""

from __future__ import annotations

import click

from .group import Names, cli, device_option, out_file
from ..look.config import ForgetConfig, NeighboursConfig, VisualizeConfig

V, N, F = VisualizeConfig, NeighboursConfig, ForgetConfig


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"comma-separated map numbers such as 0,5,17, got {value!r}") from None


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@cli.command("visualize")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", type=Names("dcgan_features.data.registry:DATASETS"), required=True,
              help="Images searched for the top responses.")
@click.option("--split", default=V.split, help="Split of --dataset.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=V.data_dir, help="Where the dataset lives.")
@click.option("--block", default=V.block, help="D block (d1, d2, ...) or module name. [default: the last block]")
@click.option("--n-maps", type=click.IntRange(1, 256), default=V.n_maps, help="The first N maps of the block.")
@click.option("--maps", callback=_int_list, default=None, help="Map numbers instead, e.g. 0,5,17.")
@click.option("--top-k", type=click.IntRange(1, 64), default=V.top_k, help="Top responses per map (distinct images).")
@click.option("--random-baseline/--no-random-baseline", default=V.random_baseline,
              help="Beside it, the same for a random D of the same architecture and width.")
@click.option("--seed", type=int, default=V.seed, help="Seed of the random D.")
@click.option("--bn", type=Names("dcgan_features.look.visualize:BN_CHOICES"), default=V.bn,
              help="BatchNorm statistics: re-estimated on the images, or the checkpoint's running ones.")
@click.option("--bn-images", type=click.IntRange(min=1), default=V.bn_images,
              help="First images of the split the statistics are re-estimated on.")
@click.option("--batch-size", type=click.IntRange(1, 65536), default=V.batch_size, help="Images per forward pass.")
@click.option("--limit", type=click.IntRange(min=1), default=V.limit, help="Search only the first N images.")
@device_option(V.device)
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=out_file,
              help="PNG to write; the numbers go to the same name with .csv.")
def visualize_cmd(checkpoint: str, out: str, **kw) -> None:
    """What D's feature maps respond to (paper figure 5): for each map, its top-k responses over
    the dataset (each image once, at its largest position), the image under the response's
    receptive field above the guided-backpropagation map of the response. Through each
    rectifier the gradient passes only where input and gradient are both positive; a
    LeakyReLU's negative slope passes nothing. A random D of the same architecture and width
    is shown beside it.

    \b
      dcgan-features visualize svhn_theano.pt --dataset fashion-mnist --n-maps 8 --top-k 8 --out fig5.png
      dcgan-features visualize runs/d/checkpoints/last.pt --dataset digits --block d2 --maps 0,3 --out v.png
    """
    from ..look.visualize import visualize

    cfg = VisualizeConfig(**kw)
    res = visualize(checkpoint, out, cfg, log=_log)
    click.echo(f"wrote top {cfg.top_k} responses of {len(res['maps'])} maps of {res['block']} over "
               f"{res['images']} images ({', '.join(res['sides'])}) to {res['png']} and {res['csv']}")
