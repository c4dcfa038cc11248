"""``extract``: features of a dataset into an HDF5 file, defaults from
:class:`~dcgan_features.extract.config.ExtractConfig` (per dataset: :func:`~dcgan_features.extract.config.extract_config`)."""

from __future__ import annotations

import click

from ..extract.config import ExtractConfig, extract_config
from .replay import config_option
from .group import MAX_BATCH, MAX_IMAGE_SIZE, MAX_WIDTH, SEED, LazyHelp, Names, cli, device_option, out_file, \
    threads_option

E = ExtractConfig  # class attributes: the defaults
SOURCE_SEED = 0  # sources.SourceOptions.seed, which imports torch (tests/cli/test_defaults.py compares)


def _model_help() -> str:
    from ..extract.sources import SOURCES

    return "What to take features from: " + "; ".join(f"{k.usage} ({k.help})" for k in SOURCES.values()) + "."


@cli.command("extract")
@config_option
@click.option("--model", "model_spec", default=None, metavar="SPEC", cls=LazyHelp, help_text=_model_help)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Same as --model checkpoint:PATH.")
@click.option("--random-init", is_flag=True, help="Same as --model random:ARCH with --arch ARCH.")
@click.option("--arch", default=None, help="With --random-init: architecture (see `dcgan-features architectures`).")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=None,
              help="With random:ARCH: width. [default: the architecture's own]")
@click.option("--seed", type=SEED, default=SOURCE_SEED, help="Seed of a random init (random, torchvision, python) or of the K-means fit.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision/python models: a state dict file, loaded with weights_only (never runs code); "
                   "for torchvision also a weights name (IMAGENET1K_V1, DEFAULT) read from torch's hub cache.")
@click.option("--image-size", type=click.IntRange(1, MAX_IMAGE_SIZE), default=None,
              help="Input size for pixels, kmeans and generic models. [default: 32]")
@click.option("--normalize", type=Names("dcgan_features.extract.sources:NORMALIZE"), default=None,
              help="Input scaling of generic models. [default: imagenet for torchvision, minus1to1 for python]")
@click.option("--kmeans-from", type=click.Path(dir_okay=False), default=None,
              help="kmeans:K: encode with the dictionary stored in this feature file instead of fitting one.")
@click.option("--kmeans-init", type=Names("dcgan_features.extract.sources.kmeans_recipe:KMEANS_INITS"), default=None,
              help="kmeans:K: start centroids as run_kmeans.m (randn x 0.1, empty clusters zeroed) or from "
                   "random patches (empty clusters re-seeded; ours). [default: randn]")
@click.option("--list-layers", is_flag=True,
              help="Print every module's name, type and output shape (one forward) and exit.")
@click.option("--dataset", default=None, help="Dataset name (see `dcgan-features datasets`).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=E.data_dir,
              help="Root folder of the datasets. [default: ./data]")
@click.option("--splits", default=",".join(E.splits), help="Comma-separated splits to extract, one HDF5 group each.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=E.test_fraction,
              help="folder without train/ and test/ (or val/): this seeded, stratified share of each class is test.")
@click.option("--split-seed", type=int, default=E.split_seed, help="folder: seed of the --test-fraction split.")
@click.option("--workers", type=click.IntRange(min=0), default=E.workers,
              help="folder: processes decoding images (0: every core).")
@click.option("--skip-bad", is_flag=True, default=E.skip_bad,
              help="folder: skip (and count) images that cannot be decoded instead of stopping at the first.")
@click.option("--layer", "layers", default=E.layers, metavar="all|NAMES",
              help="D blocks: all, a comma list (d1,d3) or a range (d2..d4); generic models: module names "
                   "or globs (layer1,layer2.*.conv2), all = every Conv2d after its activation.")
@click.option("--grid", type=click.IntRange(min=1), default=E.grid, help="Max-pool each block's output to GRID x GRID.")
@click.option("--bn", type=Names("dcgan_features.extract.hooks:BN_MODES"), default=None,
              help="BatchNorm: re-estimate statistics over train (the paper's way), over train as the SVHN "
                   "authors' script does it exactly, the model's own running statistics, or per batch. [default: "
                   "running for a model with statistics of its own (torchvision/python weights); else svhn "
                   "authors, others recompute]")
@click.option("--dtype", type=Names("dcgan_features.extract.store:DTYPES"), default=None,
              help="Stored feature dtype. [default: float32 for the paper's protocols (cifar10, svhn, also "
                   "with TF32 off on a GPU), float16 otherwise]")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=E.batch_size, help="Images per forward pass.")
@device_option(E.device)
@threads_option(E.threads)
@click.option("--limit", type=click.IntRange(min=1), default=E.limit,
              help="Only the first N images of each split (quick runs, benchmarks). [default: all]")
@click.option("--out", default=None, type=click.Path(dir_okay=False), callback=out_file,
              help="HDF5 feature file to write.")
@click.option("--overwrite", is_flag=True, default=E.overwrite,
              help="Replace a file (or unfinished run) made with other settings; the old file stays until the new one is whole.")
@click.pass_context
def extract_cmd(ctx: click.Context, model_spec: str | None, checkpoint: str | None, random_init: bool,
                arch: str | None, width: int | None, seed: int, weights: str | None, image_size: int | None,
                normalize: str | None, kmeans_from: str | None, kmeans_init: str | None, list_layers: bool,
                dataset: str | None, data_dir: str | None, splits: str, test_fraction: float, split_seed: int,
                workers: int, skip_bad: bool, layers: str, grid: int, bn: str, dtype: str, batch_size: int,
                device: str, limit: int | None, out: str | None, overwrite: bool,
                threads: int | None) -> None:
    """Features of a dataset -> HDF5: every chosen layer max-pooled to GRID x GRID, concatenated.
    Killed at any point, the same command again resumes where it stopped.

    \b
      dcgan-features extract --checkpoint runs/d/checkpoints/last.pt --dataset digits --out f.h5
      dcgan-features extract --model random:imagenet32 --dataset cifar10 --out rand.h5
      dcgan-features extract --model kmeans:1600 --dataset fashion-mnist --out km.h5
      dcgan-features extract --model random:dcgan32 --dataset folder --data-dir my_images --out mine.h5
      dcgan-features extract --model torchvision:resnet18 --list-layers
      dcgan-features extract --model python:my_net.py:make --weights w.pt --layer 'layer1,layer2.*' --dataset cifar10 --out m.h5
    """
    from ..extract.distributed import extract_any
    from ..extract.sources import SourceOptions, from_spec

    if sum(x is not None and x is not False for x in (model_spec, checkpoint, random_init or None)) != 1:
        ctx.fail("give exactly one of --checkpoint CKPT, --random-init --arch A or --model SPEC")
    if checkpoint is not None:
        given = [f"--{p}" for p in ("arch", "width", "seed")
                 if ctx.get_parameter_source(p) != click.core.ParameterSource.DEFAULT]
        if given:
            ctx.fail(f"{', '.join(given)} only apply with --random-init; a checkpoint fixes its own architecture")
        model_spec = f"checkpoint:{checkpoint}"
    elif random_init:
        if arch is None:
            ctx.fail("--random-init needs --arch (see `dcgan-features architectures`)")
        model_spec = f"random:{arch}"
    elif arch is not None:
        ctx.fail("--arch goes with --random-init; with --model write random:ARCH")
    opts = SourceOptions(seed=seed, width=width, weights=weights, image_size=image_size, normalize=normalize,
                         kmeans_from=kmeans_from, kmeans_init=kmeans_init)
    model = from_spec(model_spec, opts)
    if model.architecture in ("pixels", "kmeans"):  # no blocks to pool, no BatchNorm: refused, not ignored
        given = [f"--{p}" for p in ("grid", "bn") if ctx.get_parameter_source(p) != click.core.ParameterSource.DEFAULT]
        if given:
            ctx.fail(f"{', '.join(given)} does not apply to --model {model.spec} (it has no blocks to pool and no "
                     "BatchNorm); leave it out")
    if list_layers:
        from ..extract.sources.generic import list_layers as layer_table

        rows = [("name", "type", f"output at 3x{model.image_size}x{model.image_size}")] + layer_table(model)
        w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
        for name, kind, shape in rows:
            click.echo(f"{name:<{w0}}  {kind:<{w1}}  {shape}")
        return
    if dataset is None or out is None:
        ctx.fail("extract needs --dataset and --out (or --list-layers)")
    split_list = tuple(dict.fromkeys(s.strip() for s in splits.split(",") if s.strip()))
    if not split_list:
        ctx.fail(f"--splits needs at least one split name, got {splits!r}")
    own_bn = model.default_bn() if bn is None else None
    if own_bn:
        click.echo(f"BatchNorm: keeping {model.spec}'s own running statistics (--bn recompute re-estimates them "
                   f"over the train split)", err=True)
    cfg = extract_config(dataset, splits=split_list, layers=layers, grid=grid, bn=bn or own_bn, dtype=dtype,
                         batch_size=batch_size, device=device, data_dir=data_dir, limit=limit, overwrite=overwrite,
                         threads=threads, test_fraction=test_fraction, split_seed=split_seed,
                         workers=workers, skip_bad=skip_bad)
    res = extract_any(model, out, cfg, log=lambda m: click.echo(m, err=True), progress=True)
    if res.get("rank", 0) != 0:  # torchrun: rank 0 reports for the group
        return
    rows = " + ".join(f"{s} {n}" for s, n in res["rows"].items())
    if res["state"] == "done":
        click.echo(f"{out} already holds {rows} rows with these settings; nothing to do")
    else:
        click.echo(f"wrote {rows} rows of {model.architecture} features to {out} "
                   f"({res['seconds']:.1f} s, {res['images_per_s']:.0f} img/s"
                   + (f", {res['threads']} thread{'s' * (res['threads'] != 1)}" if res.get("threads") else "") + ")")
