"""The authors' released weights and figures from a generator: ``import-theano``, ``sample``,
``interpolate``, ``arithmetic``."""

from __future__ import annotations

import click

from ..look.config import ArithmeticConfig, InterpolateConfig, SampleConfig
from .group import MAX_NEIGHBOURS, MAX_NOISE, SEED, FiniteRange, Names, cli, device_option, out_file


@cli.command("import-theano")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--arch", required=True, type=Names("dcgan_features.nets.theano_import:ARCHES"),
              help="Architecture the arrays belong to (width and z size are read from the files).")
@click.option("--epoch", type=click.IntRange(min=0), default=None,
              help="Epoch prefix of the files. [default: the highest present]")
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=out_file,
              help="Checkpoint to write.")
def import_theano_cmd(folder: str, arch: str, epoch: int | None, out: str) -> None:
    """Convert the authors' released Theano weights (Newmu/dcgan_code) into a checkpoint.

    FOLDER holds <epoch>_gen_params.jl_NN.npy and <epoch>_discrim_params.jl_NN.npy. The
    checkpoint is marked imported: it has no running BN statistics (extract with --bn
    recompute or batch; sample uses batch statistics).

    \b
      dcgan-features import-theano ../shared/reference/svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb \\
          --arch svhn32 --out svhn_theano.pt
      dcgan-features import-theano models/imagenet_gan_pretrain_128f_relu_lrelu_7l_3x3_256z \\
          --arch imagenet32 --epoch 30 --out imagenet_theano.pt
    """
    from ..nets.theano_import import import_theano

    info = import_theano(folder, arch, out, epoch=epoch)
    click.echo(f"imported {arch} width {info.width} z={info.nz} epoch {info.epoch}: "
               f"{len(info.gen_files)} G + {len(info.discrim_files)} D arrays -> {out}")


def _gen_options(config):
    """The options every generation command shares, defaults from its ``config`` class."""
    return lambda f: _shared_options(f, config)


def _shared_options(f, config):
    f = device_option(config.device)(f)
    f = click.option("--bn", type=Names("dcgan_features.look.generate:BN_MODES"), default=config.bn,
                     help="BatchNorm statistics. [default: batch for imported checkpoints, running otherwise]")(f)
    f = click.option("--seed", type=SEED, default=config.seed, help="Seed of the latent vectors.")(f)
    f = click.option("--out", required=True, type=click.Path(dir_okay=False), callback=out_file,
                     help="PNG to write.")(f)
    return click.argument("checkpoint", type=click.Path(dir_okay=False))(f)


def _parse_ids(ctx: click.Context, flag: str, value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.split(",")]
    except ValueError:
        ctx.fail(f"{flag} must be comma-separated sample ids such as 3,17,42, got {value!r}")
    return ids


@cli.command("sample")
@_gen_options(SampleConfig)
@click.option("--n", "n", type=click.IntRange(2, 1024), default=SampleConfig.n, help="Number of samples.")
@click.option("--nrow", type=click.IntRange(min=1), default=SampleConfig.nrow,
              help="Tiles per row. [default: ~sqrt(n)]")
@click.option("--numbered", is_flag=True, default=SampleConfig.numbered,
              help="Draw each tile's id (for `arithmetic --a/--b/--c`).")
def sample_cmd(checkpoint: str, out: str, seed: int, bn: str | None, device: str, n: int, nrow: int | None,
               numbered: bool) -> None:
    """Write a grid of N samples of CHECKPOINT's generator; tile ids run row by row from 0.

    \b
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --out grid.png
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --numbered --out ids.png
      dcgan-features sample runs/d/checkpoints/last.pt --bn running --out grid.png
    """
    import math

    from ..look import generate

    L = generate.load_generator(checkpoint, bn=bn, device=device)
    _, images = generate.sample(L.G, L.spec, n, seed, nz=L.nz)
    generate.save_png(images, out, nrow or math.ceil(math.sqrt(n)), numbered=numbered)
    click.echo(f"wrote {n} samples (seed {seed}, bn {L.bn}) to {out}")


@cli.command("interpolate")
@_gen_options(InterpolateConfig)
# at most 32 x 32 images: with batch statistics a figure is decoded in one pass
@click.option("--rows", type=click.IntRange(1, 32), default=InterpolateConfig.rows,
              help="Number of walks, one per row.")
@click.option("--steps", type=click.IntRange(2, 32), default=InterpolateConfig.steps,
              help="Images per walk, end points included.")
def interpolate_cmd(checkpoint: str, out: str, seed: int, bn: str | None, device: str, rows: int,
                    steps: int) -> None:
    """Linear walks between random pairs of latent vectors, one per row (paper figure 4).

    \b
      dcgan-features interpolate svhn_theano.pt --rows 8 --steps 10 --seed 1 --out interp.png
    """
    from ..look import generate

    L = generate.load_generator(checkpoint, bn=bn, device=device)
    images = generate.interpolate(L.G, L.spec, rows, steps, seed, nz=L.nz)
    generate.save_png(images, out, steps)
    click.echo(f"wrote {rows} walks of {steps} steps (seed {seed}, bn {L.bn}) to {out}")


@cli.command("arithmetic")
@_gen_options(ArithmeticConfig)
@click.option("--a", "a", required=True, metavar="IDS", help="Sample ids of group a, e.g. 3,17,42.")
@click.option("--b", "b", required=True, metavar="IDS", help="Sample ids of group b (subtracted).")
@click.option("--c", "c", required=True, metavar="IDS", help="Sample ids of group c (added).")
@click.option("--n", "n", type=click.IntRange(2, 1024), default=ArithmeticConfig.n,
              help="The --n of the numbered `sample` grid the ids come from.")
@click.option("--neighbours", type=click.IntRange(0, MAX_NEIGHBOURS), default=ArithmeticConfig.neighbours,
              help="Perturbed copies of the result shown beside it.")
@click.option("--noise", type=FiniteRange(min=0, max=MAX_NOISE), default=ArithmeticConfig.noise,
              help="Uniform noise in [-noise, noise] added to the result's z for the neighbours.")
@click.pass_context
def arithmetic_cmd(ctx: click.Context, checkpoint: str, out: str, seed: int, bn: str | None, device: str,
                   a: str, b: str, c: str, n: int, neighbours: int, noise: float) -> None:
    """Latent vector arithmetic (paper section 6.3): mean z of a - mean z of b + mean z of c.

    Ids are the tile numbers of `dcgan-features sample CKPT --numbered` with the same --n and
    --seed. Rows of the figure: each group (its mean first), then the result and its neighbours.

    \b
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --numbered --out ids.png
      dcgan-features arithmetic svhn_theano.pt --n 64 --seed 3 --a 1,17 --b 7,22 --c 10,52 --out arith.png
    """
    from ..look import generate

    groups = [_parse_ids(ctx, flag, v) for flag, v in (("--a", a), ("--b", b), ("--c", c))]
    for flag, ids in zip(("--a", "--b", "--c"), groups):
        generate.check_ids(flag, ids, n)
    L = generate.load_generator(checkpoint, bn=bn, device=device)
    fig = generate.arithmetic(L.G, L.spec, n, seed, *groups, neighbours=neighbours, noise=noise, nz=L.nz)
    generate.save_png(fig.images, out, fig.cols, row_labels=fig.row_labels, first_label="vector")
    click.echo(f"wrote a - b + c with {neighbours} neighbours (seed {seed}, bn {L.bn}) to {out}")
