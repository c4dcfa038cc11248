"""``reproduce``: one of the paper's experiments, model to table, defaults from
:class:`~dcgan_features.reproduce.config.ReproduceConfig` and the protocol's :data:`~dcgan_features.reproduce.config.SETUPS`."""

from __future__ import annotations

import click

from ..probes.config import PROBE_NAMES
from ..reproduce.config import SETUPS, ReproduceConfig  # torch-free
from .replay import config_option
from .group import MAX_BATCH, MAX_DRAWS, MAX_WIDTH, SEED, cli, device_option, out_folder, threads_option
from .probe import parse_grid

R = ReproduceConfig  # class attributes: the defaults


def _setup_default(field: str) -> str:
    return ", ".join(f"{p} {getattr(s, field)}" for p, s in SETUPS.items())


@cli.command("reproduce")
@config_option
@click.argument("protocol", type=click.Choice(list(SETUPS)))
@click.option("--out", required=True, type=click.Path(file_okay=False), callback=out_folder,
              help="Run folder: train/, features/, probes/, stages/, results.csv, report.html.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Model: a checkpoint of `train` or `import-theano`.")
@click.option("--import-theano", "import_theano", type=click.Path(file_okay=False), default=None,
              help="Model: the authors' released Theano weights folder (converted once).")
@click.option("--train-dataset", default=None, metavar="NAME",
              help=f"Model: train one on NAME. [default when no model is given: {_setup_default('train_dataset')}; "
                   f"svhn uses the authors' model shipped with the package]")
@click.option("--train-data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the training dataset. [default: --data-dir]")
@click.option("--arch", default=None, help=f"Architecture to train. [default: {_setup_default('arch')}]")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=None, help=f"Width. [default: {_setup_default('width')}]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"[default: {_setup_default('epochs')}]")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=None,
              help=f"Training batch. [default: {_setup_default('batch_size')}]")
@click.option("--seed", type=SEED, default=None,
              help="Seeds training, the random D, the validation split and the label draws. [default: 0 for the "
                   "model and the random D; the protocol's for the probes (svhn: the authors' 42)]")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the probed dataset. [default: ./data]")
@device_option(R.device)
@threads_option(R.threads)
@click.option("--val-size", type=click.IntRange(min=1), default=None, help="Validation rows. [default: the protocol's]")
@click.option("--labels-per-class", type=click.IntRange(min=1), default=None, help="[default: the protocol's]")
@click.option("--draws", type=click.IntRange(1, MAX_DRAWS), default=None, help="Label draws. [default: the protocol's]")
@click.option("--C", "c_grid", default=None, metavar="GRID", help="Comma-separated C grid. [default: the protocol's]")
@click.option("--probe", "probes", multiple=True, default=R.probes, type=click.Choice(PROBE_NAMES), help="Probe(s); repeat the flag for several.")
@click.option("--limit", type=click.IntRange(min=1), default=R.limit,
              help="Only the first N images of each split, the training data's too (try real data in minutes; "
                   "stated in every record and the report). [default: all]")
@click.option("--blocks", is_flag=True, help="Also probe each block of the trained D alone (the per-block plot).")
@click.option("--look", is_flag=True,
              help="Also the look-inside stages: visualize (paper Fig. 5) and neighbours (memorisation check), "
                   "each a section of report.html.")
@click.option("--dry-run", is_flag=True, help="Print the stages, what each would reuse or compute, and the commands.")
@click.pass_context
def reproduce_cmd(ctx: click.Context, protocol: str, out: str, checkpoint: str | None, import_theano: str | None,
                  train_dataset: str | None, train_data_dir: str | None, arch: str | None, width: int | None,
                  epochs: int | None, batch_size: int | None, seed: int, data_dir: str | None, device: str,
                  val_size: int | None, labels_per_class: int | None, draws: int | None, c_grid: str | None,
                  probes: tuple[str, ...], blocks: bool, look: bool, dry_run: bool, threads: int | None,
                  limit: int | None) -> None:
    """One of the paper's experiments, model to table, in one folder: train (or import, or take)
    the model, extract every D block of it and of a random D of the same architecture, probe
    those and the raw pixels under PROTOCOL, write results.csv and report.html.

    A stage whose output is complete and made from the same settings is reused; an
    interrupted one resumes; a changed setting recomputes only what depends on it.

    \b
      dcgan-features reproduce digits --out runs/digits
      dcgan-features reproduce fashion-mnist --train-dataset fashion-mnist --arch dcgan32 --width 32 --epochs 2 --out runs/fm
      dcgan-features reproduce cifar10 --train-dataset imagenet32 --train-data-dir /data/imagenet32 --data-dir data --device cuda --out runs/c
      dcgan-features reproduce cifar10 --import-theano path/to/imagenet_weights --data-dir data --out runs/theano_c
      dcgan-features reproduce svhn --data-dir data --out runs/svhn
      dcgan-features reproduce digits --out runs/digits --look
      dcgan-features reproduce digits --out runs/digits --dry-run
      dcgan-features reproduce cifar10 --limit 2000 --val-size 500 --labels-per-class 20 --data-dir data --out runs/c_small
    """
    from ..reproduce import dry_run as plan_only
    from ..reproduce import run
    from ..reproduce.runner import format_summary

    cfg = ReproduceConfig(protocol, out=out, checkpoint=checkpoint, import_theano=import_theano,
                          train_dataset=train_dataset, train_data_dir=train_data_dir, arch=arch, width=width,
                          epochs=epochs, batch_size=batch_size, seed=seed, data_dir=data_dir, device=device,
                          val_size=val_size, labels_per_class=labels_per_class, draws=draws,
                          c_grid=None if c_grid is None else tuple(parse_grid(ctx, c_grid)),
                          probes=tuple(dict.fromkeys(probes)), blocks=blocks, look=look, threads=threads,
                          limit=limit)
    if dry_run:
        click.echo(plan_only(cfg))
        return
    res = run(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(res["chain"].records(), protocol))
    click.echo(f"wrote {res['results']} and {res['report']}")
