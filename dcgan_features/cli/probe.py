"""``probe``: a dataset's protocol on an extracted feature file."""

from __future__ import annotations

import click

from ..core.errors import UserError
from ..probes.config import BACKENDS, PROBE_NAMES, ProbeConfig
from .replay import config_option
from .group import MAX_DRAWS, SEED, Names, cli, device_option, out_folder, threads_option

DEFAULTS = ProbeConfig()


def parse_grid(ctx: click.Context, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        grid = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        ctx.fail(f"--C must be comma-separated numbers such as 1e-3,1e-2,0.1, got {value!r}")
    if not grid or any(not (c > 0 and c < float("inf")) for c in grid):
        ctx.fail(f"--C values must be positive and finite, got {value!r}")
    from ..probes.linear import check_Cs

    check_Cs(grid)  # float32's range of C, before any work
    return grid


@cli.command("probe")
@config_option
@click.argument("dataset", required=False, type=Names("dcgan_features.data.registry:DATASETS"))
@click.option("--features", "features_path", required=True, type=click.Path(dir_okay=False),
              help="HDF5 feature file written by `dcgan-features extract`.")
@click.option("--probe", "probes", multiple=True, default=DEFAULTS.probes,
              type=click.Choice(PROBE_NAMES + ("all",)), help="Probe(s); repeat the flag or use all.")
@click.option("--C", "c_grid", default=None, metavar="GRID",
              help="Comma-separated C grid. [default: the protocol's: 1e-5..1e-1, svhn 1e-4..1e-2]")
@click.option("--extend-C", "c_extend", type=click.IntRange(min=0), default=None,
              help="When C lands on the grid's first or last value, add a decade that way and choose again "
                   "(on validation), at most this many times (0: never). [default: the protocol's: 2, svhn 0]")
@click.option("--draws", type=click.IntRange(1, MAX_DRAWS), default=None,
              help="Seeded label draws of the few-labels column. [default: the protocol's: 10, svhn 100]")
@click.option("--seed", type=SEED, default=DEFAULTS.seed,
              help="Seed of the validation split and the label draws. [default: the protocol's: 0, svhn 42]")
@click.option("--validation", type=Names("dcgan_features.probes.protocols:VALIDATIONS"), default=None,
              help="Validation rows: val-size/classes of each class, val-size drawn uniformly (the SVHN "
                   "authors'), or a stratified 10% of each class, at most val-size (the generic protocol's). "
                   "[default: the protocol's: per-class, svhn uniform, generic stratified]")
@click.option("--selection", type=Names("dcgan_features.probes.protocols:SELECTIONS"), default=None,
              help="Choosing C: the same draws for every C, or fresh draws for each C from one stream that "
                   "then gives the measured draws (the SVHN authors'). [default: shared, svhn fresh]")
@click.option("--ci-ddof", type=click.Choice(["0", "1"]), default=None,
              help="The interval is 1.96 x std over draws with this ddof. [default: 1, svhn 0 as the authors]")
@click.option("--standardize", is_flag=True, default=DEFAULTS.standardize,
              help="Scale every feature to zero mean, unit variance (train rows), instead of any recorded "
                   "post-processing.")
@click.option("--postprocess/--no-postprocess", default=DEFAULTS.postprocess,
              help="Apply the post-processing the feature file records (kmeans:K: Coates's standardisation, "
                   "train mean and sqrt(var + 0.01), applied to test too).")
@device_option(DEFAULTS.device)
@threads_option(DEFAULTS.threads)
@click.option("--backend", type=click.Choice(BACKENDS), default=DEFAULTS.backend,
              help="torch: our solver (CPU/GPU, streams from disk); sklearn: LinearSVC / LogisticRegression.")
@click.option("--val-size", type=click.IntRange(min=1), default=None,
              help="Rows held out of train to choose C. [default: the protocol's: 10000, digits 300]")
@click.option("--labels-per-class", type=click.IntRange(min=1), default=None,
              help="Labels per class of the few-labels column. [default: cifar10 400, others 100, digits 20]")
@click.option("--out", "out", type=click.Path(file_okay=False), default=DEFAULTS.out, callback=out_folder,
              help="Folder for one JSON per record and the rows appended to probes.csv.")
@click.pass_context
def probe_cmd(ctx: click.Context, dataset: str | None, features_path: str, probes: tuple[str, ...], c_grid: str | None,
              c_extend: int | None, draws: int | None, seed: int | None, validation: str | None,
              selection: str | None, ci_ddof: str | None, standardize: bool, postprocess: bool, device: str,
              backend: str,
              val_size: int | None, labels_per_class: int | None, out: str, threads: int | None) -> None:
    """Linear probes on extracted features under DATASET's protocol (C chosen on validation rows).
    DATASET defaults to the one the feature file was extracted from; a dataset without a registered
    protocol (a folder, ...) gets the generic one, built from the file: its classes, a stratified 10%
    of train (at most 10000) held out to choose C, the `all` column, and a few-labels column with
    --labels-per-class.

    \b
      dcgan-features probe --features mine.h5          # the file's dataset and protocol
      dcgan-features probe digits --features f.h5
      dcgan-features probe cifar10 --features cifar.h5 --probe svm --device cuda
      dcgan-features probe svhn --features svhn.h5 --C 1e-4,1e-3,1e-2 --draws 100
      dcgan-features probe fashion-mnist --features fm.h5 --probe all --standardize --out runs/probes_fm
      dcgan-features probe digits --features f.h5 --backend sklearn --val-size 100 --labels-per-class 5
      torchrun --standalone --nproc-per-node 8 -m dcgan_features.cli probe cifar10 --features c.h5 \\
          --device cuda       # each GPU holds a share of the rows; the same records
    """
    import contextlib
    from pathlib import Path

    from ..core.distributed import agree, joined, same_launch
    from ..core.locks import output_lock
    from ..core.atomic import check_csv_header
    from ..probes.generic import protocol_for
    from ..probes.protocols import from_file, get_protocol, run_protocol
    from ..probes.records import CSV_COLUMNS, format_table, write_records
    from ..extract.store import FeatureFile

    grid = parse_grid(ctx, c_grid)
    chosen = PROBE_NAMES if "all" in probes else tuple(dict.fromkeys(probes))
    if backend == "sklearn" and device == "cuda":
        ctx.fail("--backend sklearn runs on the CPU only; drop --device cuda")
    check_csv_header(Path(out) / "probes.csv", CSV_COLUMNS)  # a foreign table: refused before the work

    def features_exist() -> None:
        if not Path(features_path).is_file():
            raise UserError(f"feature file {features_path!r} not found; write one with `dcgan-features extract`")

    overrides = dict(draws=draws, val_size=val_size, labels_per_class=labels_per_class, c_extend=c_extend,
                     validation=validation, selection=selection, ci_ddof=None if ci_ddof is None else int(ci_ddof))
    # the table this run appends to is held from the start: a second probe on it is refused.
    # torchrun: every rank runs the protocol, each fit on its share of the rows; rank 0 reports
    with contextlib.ExitStack() as stack:
        group = stack.enter_context(joined(device if backend == "torch" else "cpu"))
        agree(group, features_exist)  # under torchrun: one line from rank 0, not one per rank
        if group.rank == 0:
            stack.enter_context(output_lock(Path(out) / "probes.csv", parents=True))
        ff = stack.enter_context(FeatureFile(features_path))
        if group.enabled:
            same_launch(group, {**ctx.params, "features": {"path": str(Path(features_path).resolve()),
                                                           "bytes": Path(features_path).stat().st_size,
                                                           **{k: str(v) for k, v in ff.meta.items()}}})
        made_from = ff.meta.get("dataset")
        dataset = dataset or made_from
        if made_from and made_from != dataset:
            raise UserError(f"{features_path} holds features of {made_from!r}, not {dataset!r}; "
                            f"run `probe {made_from}` or extract {dataset} features")

        def labels(split: str):
            if split not in ff.splits:
                raise UserError(f"{features_path} has no {split!r} split (has: {', '.join(ff.splits) or 'none'}); "
                                f"the {dataset} protocol needs train and test")
            return ff.labels(split)

        cfg = protocol_for(dataset, labels, ff.dataset_info()["classes"], **overrides)
        feats = from_file(ff, cfg, device=device if backend == "torch" else "cpu")
        log = (lambda m: click.echo(m, err=True)) if group.rank == 0 else (lambda m: None)
        records = run_protocol(dataset, feats, chosen, cfg, Cs=grid, seed=seed, device=device,
                               backend=backend, standardize=standardize, log=log, threads=threads, postprocess=postprocess,
                               progress=group.rank == 0)
        if group.rank != 0:
            return
        click.echo(format_table(records))
        paths = write_records(records, out)
    click.echo(f"wrote {len(paths) - 1} JSON record(s) and appended to {paths[-1]}")
