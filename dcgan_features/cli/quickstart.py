"""``quickstart``: the main job end to end, defaults from :class:`~dcgan_features.reproduce.quickstart.QuickstartConfig`."""

from __future__ import annotations

import click

from ..probes.config import PROBE_NAMES
from ..reproduce.quickstart import QuickstartConfig  # torch-free: only its defaults are read here
from ..reproduce.config import SETUPS  # torch-free too
from .group import MAX_BATCH, MAX_WIDTH, SEED, cli, device_option, out_file, out_folder, threads_option

Q = QuickstartConfig  # class attributes: the defaults


@cli.command("quickstart")
@click.option("--dataset", default=Q.dataset, type=click.Choice(list(SETUPS)),
              help="Dataset to train on and probe.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=Q.data_dir,
              help="Root folder of the datasets. [default: ./data]")
@click.option("--arch", default=Q.arch, help="Architecture. [default: the dataset's, as `reproduce`]")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=Q.width,
              help="Width of G and D. [default: the dataset's]")
@click.option("--epochs", type=click.IntRange(min=1), default=Q.epochs, help="Training epochs. [default: the dataset's]")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=Q.batch_size, help="[default: the dataset's]")
@device_option(Q.device)
@threads_option(Q.threads)
@click.option("--seed", type=SEED, default=Q.seed, help="Seeds training, the random D and the probes.")
@click.option("--probe", "probes", multiple=True, default=Q.probes,
              type=click.Choice(PROBE_NAMES), help="Probe(s); repeat the flag for several.")
@click.option("--out", default=Q.out, type=click.Path(file_okay=False), callback=out_folder,
              help="The reproduce run folder (model, features, probes, results.csv, report.html).")
@click.option("--results", default=Q.results, type=click.Path(dir_okay=False),
              callback=lambda ctx, param, value: out_file(ctx, param, value, parents=True),
              help="Also copy the table there as CSV, the sample grid and the report beside it "
                   "(`make example-results`: results/quickstart.csv). [default: no copy; all is in --out]")
def quickstart_cmd(dataset: str, data_dir: str | None, arch: str | None, width: int | None, epochs: int | None,
                   batch_size: int | None, device: str, threads: int | None, seed: int, probes: tuple[str, ...],
                   out: str, results: str | None) -> None:
    """`reproduce DATASET --train-dataset DATASET` (train on the dataset itself), everything in
    --out; with --results, the table, the sample grid and the report copied there too.
    `make demo` runs it; `make example-results` with --results results/quickstart.csv.

    \b
      dcgan-features quickstart                      # digits, CPU (its time: results/demo_time.csv)
      dcgan-features quickstart --results results/quickstart.csv   # = make example-results
      dcgan-features quickstart --dataset fashion-mnist --width 64 --epochs 25 --device cuda --out runs/fm
    """
    import time

    from ..reproduce.quickstart import run
    from ..reproduce.runner import format_summary

    t0 = time.perf_counter()
    res = run(QuickstartConfig(dataset=dataset, arch=arch, width=width, epochs=epochs, batch_size=batch_size,
                               device=device, data_dir=data_dir, seed=seed, probes=tuple(dict.fromkeys(probes)),
                               out=out, results=results, threads=threads),
              log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(res.records, dataset))
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
    click.echo(f"wrote {res.csv}, {res.report}" + (f" and {res.samples}" if res.samples else "")
               + f"; checkpoint {res.checkpoint}; stages: {secs}; this run {time.perf_counter() - t0:.0f} s")
