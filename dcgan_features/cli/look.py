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
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option("--model", "model_spec", default=None, metavar="SPEC",
              help="Instead of CHECKPOINT: a model with conv layers, as `extract --model` (torchvision:NAME, "
                   "python:MODULE:CALLABLE); the baseline is the same model re-initialised.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="--model: a state dict file.")
@click.option("--image-size", type=click.IntRange(8, 1024), default=None, help="--model: input size. [default: 32]")
@click.option("--normalize", type=Names("dcgan_features.extract.sources.base:NORMALIZE"), default=None,
              help="--model: how images are fed. [default: the kind's, as `extract`]")
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
def visualize_cmd(checkpoint: str | None, out: str, model_spec: str | None, weights: str | None,
                  image_size: int | None, normalize: str | None, **kw) -> None:
    """What D's feature maps respond to (paper figure 5): for each map, its top-k responses over
    the dataset (each image once, at its largest position), the image under the response's
    receptive field above the guided-backpropagation map of the response. Through each
    rectifier the gradient passes only where input and gradient are both positive; a
    LeakyReLU's negative slope passes nothing. A random D of the same architecture and width
    is shown beside it.

    \b
      dcgan-features visualize svhn_theano.pt --dataset digits --n-maps 8 --top-k 8 --out fig5.png
      dcgan-features visualize runs/d/checkpoints/last.pt --dataset digits --block d2 --maps 0,3 --out v.png
      dcgan-features visualize --model torchvision:resnet18 --weights r18.pt --dataset cifar10 --block layer3 --out r.png
    """
    from ..extract.sources import SourceOptions
    from ..look.visualize import visualize

    cfg = VisualizeConfig(**kw)
    opts = SourceOptions(seed=cfg.seed, weights=weights, image_size=image_size, normalize=normalize)
    if model_spec is None and (weights or image_size or normalize):
        raise click.UsageError("--weights, --image-size and --normalize go with --model")
    res = visualize(checkpoint, out, cfg, log=_log, model_spec=model_spec, options=opts)
    click.echo(f"wrote top {cfg.top_k} responses of {len(res['maps'])} maps of {res['block']} over "
               f"{res['images']} images ({', '.join(res['sides'])}) to {res['png']} and {res['csv']}")


@cli.command("neighbours")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", type=Names("dcgan_features.data.registry:DATASETS"), required=True,
              help="The training set the samples are compared with (its train split).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=N.data_dir, help="Where the dataset lives.")
@click.option("--n", "n", type=click.IntRange(2, 1024), default=N.n, help="Samples (the `sample --n` grid of --seed).")
@click.option("--k", "k", type=click.IntRange(1, 64), default=N.k, help="Nearest training images per sample and space.")
@click.option("--seed", type=int, default=N.seed, help="Seed of the samples' z and of the reference images.")
@click.option("--reference", type=click.IntRange(min=1), default=N.reference,
              help="Training images whose nearest other training image gives the baseline distances.")
@click.option("--chunk", type=click.IntRange(1, 1 << 20), default=N.chunk, help="Training images compared at a time.")
@click.option("--bn", type=Names("dcgan_features.look.generate:BN_MODES"), default=N.bn,
              help="G's BatchNorm statistics. [default: batch for imported checkpoints, running otherwise]")
@click.option("--bn-images", type=click.IntRange(min=1), default=N.bn_images,
              help="Training images D's BatchNorm statistics are re-estimated on (for its features).")
@click.option("--limit", type=click.IntRange(min=2), default=N.limit, help="Only the first N training images.")
@device_option(N.device)
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=out_file,
              help="Grid PNG; beside it NAME_distances.png, NAME.csv and NAME_summary.csv.")
def neighbours_cmd(checkpoint: str, out: str, **kw) -> None:
    """Memorisation check: each sample's k nearest training images in pixel space (L2) and in
    D-feature space (cosine), as a grid; and how near each sample's nearest training image is
    compared with how near training images are to each other (their nearest other training
    image): a histogram and the fraction of samples nearer than the median training pair. A G
    that copies its data has a fraction near 1; a real pair of different images sets the scale.
    The training set is streamed in chunks; runs on the GPU when there is one.

    \b
      dcgan-features neighbours runs/fm/checkpoints/last.pt --dataset fashion-mnist --n 16 --k 5 --out nn.png
    """
    from ..look.neighbours import neighbours

    cfg = NeighboursConfig(**kw)
    res = neighbours(checkpoint, out, cfg, log=_log)
    parts = [f"{s}: {100 * float(v['fraction_closer']):.1f}% of samples nearer than the median train pair "
             f"({float(v['median_sample_nearest']):.3g} vs {float(v['median_train_pair']):.3g})"
             for s, v in res["spaces"].items()]
    click.echo(f"wrote {cfg.n} samples x {cfg.k} neighbours to {out}; " + "; ".join(parts))


@cli.command("forget")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--boxes", "boxes_path", required=True, type=click.Path(dir_okay=False),
              help="JSON file of bounding boxes on numbered samples (format above).")
@click.option("--n", "n", type=click.IntRange(2, 1024), default=F.n, help="The --n of the numbered grid the boxes are on.")
@click.option("--seed", type=int, default=F.seed, help="The --seed of that grid.")
@click.option("--layer", default=F.layer,
              help="G layer g1, g2, ... (input side first) or module name. [default: the last hidden layer, "
                   "the paper's second-highest conv layer]")
@click.option("--drop", type=click.IntRange(min=1), default=F.drop,
              help="Drop the K maps with the largest weights. [default: every map with weight > 0]")
@click.option("--C", "C", type=click.FloatRange(min=0, min_open=True), default=F.C, help="Inverse L2 strength of the probe.")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=F.holdout,
              help="Fraction of the boxed samples held out to score the probe.")
@click.option("--show", type=click.IntRange(2, 256), default=F.show, help="New samples drawn with and without the maps.")
@click.option("--show-seed", type=int, default=F.show_seed, help="Seed of their z.")
@click.option("--bn", type=Names("dcgan_features.look.generate:BN_MODES"), default=F.bn,
              help="BatchNorm statistics. [default: batch for imported checkpoints, running otherwise]")
@device_option(F.device)
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=out_file,
              help="PNG (samples | maps dropped); NAME.csv has each map's weight, NAME_summary.csv the numbers.")
def forget_cmd(checkpoint: str, boxes_path: str, out: str, **kw) -> None:
    """Make G forget an object (paper figure 6). BOXES marks the object on numbered samples of
    `dcgan-features sample CKPT --numbered --n N --seed S`. A logistic regression on the chosen
    layer's activations separates positions inside the boxes from random positions outside
    them; the maps with positive weight (or the --drop largest) are then set to zero at every
    location by a forward hook, and new samples are drawn with and without them from the same z.

    \b
    BOXES (JSON; [x0, y0, x1, y1] in image pixels, right and bottom exclusive; keys are tile ids;
    "n" and "seed" optional, checked against --n and --seed):
      {"n": 64, "seed": 3, "boxes": {"5": [[10, 4, 22, 20]], "17": [[8, 6, 20, 26]]}}

    \b
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --numbered --out ids.png
      dcgan-features forget svhn_theano.pt --boxes boxes.json --n 64 --seed 3 --out forget.png
    """
    from ..look.forget_run import forget

    cfg = ForgetConfig(**kw)
    s = forget(checkpoint, boxes_path, out, cfg, log=_log)
    click.echo(f"dropped {s['dropped']} of {s['maps']} maps of {s['layer']} (probe held-out accuracy "
               f"{float(s['heldout_accuracy']):.3f}, {s['positives']} positives, {s['negatives']} negatives); "
               f"box contrast {s['box_contrast_before']} -> {s['box_contrast_after']}; "
               f"wrote {out}")
