"""The ``dcgan-features`` command: parse, check, call the library, nothing else.

Every user error (a :class:`~dcgan_features.errors.UserError` from the library or a
click usage error) becomes one ``error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import UserError
from .quickstart import QuickstartConfig  # torch-free: only its defaults are read here
from .reproduce.config import SETUPS, ReproduceConfig  # torch-free too

# Upper bounds of the size options: each far above any real use (the paper's widths are 64-128,
# its batch 128) and low enough that a typo cannot ask for tens of GB before failing
# (`arithmetic --neighbours 100000` once grew to 22 GB).
MAX_WIDTH, MAX_NZ, MAX_BATCH, MAX_IMAGE_SIZE, MAX_NEIGHBOURS, MAX_DRAWS = 1024, 4096, 65536, 1024, 64, 10000

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


def _out_file(ctx: click.Context, param: click.Parameter, value: str | None, parents: bool = False) -> str | None:
    """--out callback: a file in a writable folder (one that can be created, with ``parents``),
    checked before any work."""
    from .atomic import check_output_file

    if value is not None:
        try:
            check_output_file(value, parents=parents)
        except UserError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _out_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--out callback for a run folder: a writable folder, or one that can be created."""
    from .atomic import check_output_folder

    if value is not None:
        try:
            check_output_folder(value)
        except UserError as e:
            raise click.BadParameter(str(e)) from None
    return value


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
@click.option("--image-size", type=click.IntRange(8, MAX_IMAGE_SIZE), default=None,
              help="With --verify: resize to this size, as training does.")
@click.option("--download", is_flag=True,
              help="With --verify: fetch a missing public dataset (cifar10, svhn, fashion-mnist) with torchvision; "
                   "for the others, say where to get them.")
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
    from .data import describe, get_dataset

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


# ------------------------------------------------------------------------- probe


def _parse_grid(ctx: click.Context, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        grid = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        ctx.fail(f"--C must be comma-separated numbers such as 1e-3,1e-2,0.1, got {value!r}")
    if not grid or any(not (c > 0 and c < float("inf")) for c in grid):
        ctx.fail(f"--C values must be positive and finite, got {value!r}")
    return grid


@cli.command("probe")
@click.argument("dataset", type=click.Choice(["cifar10", "svhn", "fashion-mnist", "digits"]))
@click.option("--features", "features_path", required=True, type=click.Path(dir_okay=False),
              help="HDF5 feature file written by `dcgan-features extract`.")
@click.option("--probe", "probes", multiple=True, default=("svm", "logreg"),
              type=click.Choice(["svm", "logreg", "knn", "all"]), help="Probe(s); repeat the flag or use all.")
@click.option("--C", "c_grid", default=None, metavar="GRID",
              help="Comma-separated C grid. [default: the protocol's: 1e-5..1e-1, svhn 1e-4..1e-2]")
@click.option("--extend-C", "c_extend", type=click.IntRange(min=0), default=None,
              help="When C lands on the grid's first or last value, add a decade that way and choose again "
                   "(on validation), at most this many times (0: never). [default: the protocol's: 2, svhn 0]")
@click.option("--draws", type=click.IntRange(1, MAX_DRAWS), default=None,
              help="Seeded label draws of the few-labels column. [default: the protocol's: 10, svhn 100]")
@click.option("--seed", type=int, default=None,
              help="Seed of the validation split and the label draws. [default: the protocol's: 0, svhn 42]")
@click.option("--validation", type=click.Choice(["per-class", "uniform"]), default=None,
              help="Validation rows: val-size/classes of each class, or val-size drawn uniformly (the SVHN "
                   "authors'). [default: the protocol's: per-class, svhn uniform]")
@click.option("--selection", type=click.Choice(["shared", "fresh"]), default=None,
              help="Choosing C: the same draws for every C, or fresh draws for each C from one stream that "
                   "then gives the measured draws (the SVHN authors'). [default: shared, svhn fresh]")
@click.option("--ci-ddof", type=click.Choice(["0", "1"]), default=None,
              help="The interval is 1.96 x std over draws with this ddof. [default: 1, svhn 0 as the authors]")
@click.option("--standardize", is_flag=True, help="Scale every feature to zero mean, unit variance (train rows).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--backend", type=click.Choice(["torch", "sklearn"]), default="torch",
              help="torch: our solver (CPU/GPU, streams from disk); sklearn: LinearSVC / LogisticRegression.")
@click.option("--val-size", type=click.IntRange(min=1), default=None,
              help="Rows held out of train to choose C. [default: the protocol's: 10000, digits 300]")
@click.option("--labels-per-class", type=click.IntRange(min=1), default=None,
              help="Labels per class of the few-labels column. [default: cifar10 400, others 100, digits 20]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results/probes",
              help="Folder for one JSON per record and the rows appended to probes.csv.")
@click.pass_context
def probe_cmd(ctx: click.Context, dataset: str, features_path: str, probes: tuple[str, ...], c_grid: str | None,
              c_extend: int | None, draws: int | None, seed: int | None, validation: str | None,
              selection: str | None, ci_ddof: str | None, standardize: bool, device: str, backend: str, val_size: int | None,
              labels_per_class: int | None, out_dir: str) -> None:
    """Linear probes on extracted features under DATASET's protocol (C chosen on validation rows).

    \b
      dcgan-features probe digits --features f.h5
      dcgan-features probe cifar10 --features cifar.h5 --probe svm --device cuda
      dcgan-features probe svhn --features svhn.h5 --C 1e-4,1e-3,1e-2 --draws 100
      dcgan-features probe fashion-mnist --features fm.h5 --probe all --standardize --out results/probes
      dcgan-features probe digits --features f.h5 --backend sklearn --val-size 100 --labels-per-class 5
      torchrun --standalone --nproc-per-node 8 -m dcgan_features.cli probe cifar10 --features c.h5 \\
          --device cuda       # each GPU holds a share of the rows; the same records
    """
    import contextlib
    from pathlib import Path

    from .distributed import joined, same_launch
    from .locks import output_lock
    from .probes.protocols import from_file, get_protocol, run_protocol
    from .records import format_table, write_records
    from .store import FeatureFile

    grid = _parse_grid(ctx, c_grid)
    chosen = ("svm", "logreg", "knn") if "all" in probes else tuple(dict.fromkeys(probes))
    if backend == "sklearn" and device == "cuda":
        ctx.fail("--backend sklearn runs on the CPU only; drop --device cuda")
    if not Path(features_path).is_file():
        raise UserError(f"feature file {features_path!r} not found; write one with `dcgan-features extract`")
    cfg = get_protocol(dataset, draws=draws, val_size=val_size, labels_per_class=labels_per_class, c_extend=c_extend,
                       validation=validation, selection=selection, ci_ddof=None if ci_ddof is None else int(ci_ddof))
    # the table this run appends to is held from the start: a second probe on it is refused.
    # torchrun: every rank runs the protocol, each fit on its share of the rows; rank 0 reports
    with joined(device if backend == "torch" else "cpu") as group, \
            (output_lock(Path(out_dir) / "probes.csv", parents=True) if group.rank == 0 else contextlib.nullcontext()), \
            FeatureFile(features_path) as ff:
        if group.enabled:
            same_launch(group, {**ctx.params, "features": {"path": str(Path(features_path).resolve()),
                                                           "bytes": Path(features_path).stat().st_size,
                                                           **{k: str(v) for k, v in ff.meta.items()}}})
        made_from = ff.meta.get("dataset")
        if made_from and made_from != dataset:
            raise UserError(f"{features_path} holds features of {made_from!r}, not {dataset!r}; "
                            f"run `probe {made_from}` or extract {dataset} features")
        feats = from_file(ff, cfg, device=device if backend == "torch" else "cpu")
        log = (lambda m: click.echo(m, err=True)) if group.rank == 0 else (lambda m: None)
        records = run_protocol(dataset, feats, chosen, cfg, Cs=grid, seed=seed, device=device,
                               backend=backend, standardize=standardize, log=log)
        if group.rank != 0:
            return
        click.echo(format_table(records))
        paths = write_records(records, out_dir)
    click.echo(f"wrote {len(paths) - 1} JSON record(s) and appended to {paths[-1]}")


# ------------------------------------------------------------------------- train


@cli.command("train")
@click.option("--dataset", required=True, metavar="NAME",
              help="Training images: cifar10, svhn, fashion-mnist, digits, folder, synthetic (labels unused).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the datasets. [default: ./data, then known system folders]")
@click.option("--arch", required=True, metavar="NAME", help="imagenet32, svhn32, dcgan32 or dcgan64.")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=None,
              help="Channel width of G and D. [default: the architecture's]")
@click.option("--epochs", type=click.IntRange(min=1), default=25, help="Passes over the training split.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: config.json, metrics.jsonl, samples/, checkpoints/, losses.png.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=128,
              help="Global batch (split over torchrun ranks).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-4, help="Adam learning rate, G and D.")
@click.option("--beta1", type=click.FloatRange(min=0, max=1, max_open=True), default=0.5, help="Adam beta1.")
@click.option("--nz", type=click.IntRange(1, MAX_NZ), default=None, help="Latent size. [default: the architecture's]")
@click.option("--seed", type=int, default=0, help="Seeds init, data order, z and the fixed sample z.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--amp/--no-amp", default=True, help="bf16 autocast (CUDA only; ignored on CPU).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile G and D (slow start, faster steps).")
@click.option("--cuda-graph/--no-cuda-graph", default=None,
              help="Capture the whole step as one CUDA graph and replay it. [default: on CUDA when it applies]")
@click.option("--joint-d/--no-joint-d", default=True, show_default=True,
              help="One D pass over cat(real, fake), BatchNorm statistics per half (the paper's two passes' math).")
@click.option("--prenormalize/--no-prenormalize", default=None,
              help="Keep the images on the device in [-1, 1] in the compute dtype. [default: when it fits]")
@click.option("--async-ckpt/--no-async-ckpt", default=True, show_default=True,
              help="Write checkpoints from a snapshot on a background thread.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt, exactly.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in an --out that holds another run or files this tool did not write.")
@click.option("--sample-every", type=click.IntRange(min=1), default=1, help="Epochs between sample grids.")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=500,
              help="Steps between writes of checkpoints/last.pt (also written at every epoch end).")
@click.option("--keep-every", type=click.IntRange(min=0), default=10,
              help="Epochs between kept checkpoints/epoch_NNN.pt (0: never).")
@click.option("--log-every", type=click.IntRange(min=1), default=50, help="Steps between metrics.jsonl rows.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps in total (smoke runs). [default: no limit]")
def train_cmd(dataset: str, data_dir: str | None, arch: str, width: int | None, epochs: int,
              out: str, batch_size: int, lr: float, beta1: float, nz: int | None, seed: int, device: str,
              amp: bool, compile_: bool, cuda_graph: bool | None, joint_d: bool, prenormalize: bool | None,
              async_ckpt: bool, resume: bool, overwrite: bool, sample_every: int, ckpt_every: int, keep_every: int,
              log_every: int, max_steps: int | None) -> None:
    """Train a DCGAN (paper defaults: Adam 2e-4, beta1 0.5, batch 128, BCE, one D step per G step).

    Ctrl-C or SIGTERM writes a checkpoint and prints the command that resumes the run.
    Several GPUs or nodes: launch the same command with torchrun.

    \b
      dcgan-features train --dataset digits --arch dcgan32 --width 16 --epochs 5 --out runs/d
      dcgan-features train --dataset fashion-mnist --arch dcgan32 --width 32 --epochs 3 --out runs/fm
      dcgan-features train --dataset cifar10 --data-dir data --arch imagenet32 --compile --out runs/c
      dcgan-features train --dataset cifar10 --data-dir data --arch imagenet32 --out runs/c --resume
      torchrun --nproc-per-node 4 -m dcgan_features.cli train --dataset cifar10 --arch imagenet32 --out runs/c4
    """
    import os

    from .architectures import get_arch
    from .data import get_dataset
    from .train import TrainConfig, train

    get_arch(arch)  # unknown names fail here with the list, before anything is loaded
    get_dataset(dataset)
    cfg = TrainConfig(dataset=dataset, arch=arch, out=out, epochs=epochs, width=width, data_dir=data_dir,
                      batch_size=batch_size, lr=lr, beta1=beta1, nz=nz, seed=seed, device=device, amp=amp,
                      compile=compile_, cuda_graph=cuda_graph, joint_d=joint_d, prenormalize=prenormalize,
                      async_ckpt=async_ckpt, resume=resume, overwrite=overwrite, sample_every=sample_every,
                      ckpt_every=ckpt_every, keep_every=keep_every, log_every=log_every, max_steps=max_steps)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        m = result.last_metrics
        tail = (f", loss_D {m['loss_d']:.3f}, loss_G {m['loss_g']:.3f}" if m else "")
        click.echo(f"trained to step {result.step} (epoch {result.epoch:.2f}){tail}, "
                   f"{result.img_per_s:.0f} img/s; checkpoint: {result.checkpoint}")


# ------------------------------------------------------------------ theano / generation


@cli.command("import-theano")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--arch", required=True, type=click.Choice(["svhn32", "imagenet32"]),
              help="Architecture the arrays belong to (width and z size are read from the files).")
@click.option("--epoch", type=click.IntRange(min=0), default=None,
              help="Epoch prefix of the files. [default: the highest present]")
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=_out_file,
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
    from .theano_import import import_theano

    info = import_theano(folder, arch, out, epoch=epoch)
    click.echo(f"imported {arch} width {info.width} z={info.nz} epoch {info.epoch}: "
               f"{len(info.gen_files)} G + {len(info.discrim_files)} D arrays -> {out}")


def _gen_options(f):
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")(f)
    f = click.option("--bn", type=click.Choice(["batch", "running"]), default=None,
                     help="BatchNorm statistics. [default: batch for imported checkpoints, running otherwise]")(f)
    f = click.option("--seed", type=int, default=0, help="Seed of the latent vectors.")(f)
    f = click.option("--out", required=True, type=click.Path(dir_okay=False), callback=_out_file,
                     help="PNG to write.")(f)
    return click.argument("checkpoint", type=click.Path(dir_okay=False))(f)


def _parse_ids(ctx: click.Context, flag: str, value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.split(",")]
    except ValueError:
        ctx.fail(f"{flag} must be comma-separated sample ids such as 3,17,42, got {value!r}")
    return ids


@cli.command("sample")
@_gen_options
@click.option("--n", "n", type=click.IntRange(2, 1024), default=64, help="Number of samples.")
@click.option("--nrow", type=click.IntRange(min=1), default=None, help="Tiles per row. [default: ~sqrt(n)]")
@click.option("--numbered", is_flag=True, help="Draw each tile's id (for `arithmetic --a/--b/--c`).")
def sample_cmd(checkpoint: str, out: str, seed: int, bn: str | None, device: str, n: int, nrow: int | None,
               numbered: bool) -> None:
    """Write a grid of N samples of CHECKPOINT's generator; tile ids run row by row from 0.

    \b
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --out grid.png
      dcgan-features sample svhn_theano.pt --n 64 --seed 3 --numbered --out ids.png
      dcgan-features sample runs/d/checkpoints/last.pt --bn running --out grid.png
    """
    import math

    from . import generate

    L = generate.load_generator(checkpoint, bn=bn, device=device)
    _, images = generate.sample(L.G, L.spec, n, seed, nz=L.nz)
    generate.save_png(images, out, nrow or math.ceil(math.sqrt(n)), numbered=numbered)
    click.echo(f"wrote {n} samples (seed {seed}, bn {L.bn}) to {out}")


@cli.command("interpolate")
@_gen_options
# at most 32 x 32 images: with batch statistics a figure is decoded in one pass
@click.option("--rows", type=click.IntRange(1, 32), default=8, help="Number of walks, one per row.")
@click.option("--steps", type=click.IntRange(2, 32), default=10, help="Images per walk, end points included.")
def interpolate_cmd(checkpoint: str, out: str, seed: int, bn: str | None, device: str, rows: int,
                    steps: int) -> None:
    """Linear walks between random pairs of latent vectors, one per row (paper figure 4).

    \b
      dcgan-features interpolate svhn_theano.pt --rows 8 --steps 10 --seed 1 --out interp.png
    """
    from . import generate

    L = generate.load_generator(checkpoint, bn=bn, device=device)
    images = generate.interpolate(L.G, L.spec, rows, steps, seed, nz=L.nz)
    generate.save_png(images, out, steps)
    click.echo(f"wrote {rows} walks of {steps} steps (seed {seed}, bn {L.bn}) to {out}")


@cli.command("arithmetic")
@_gen_options
@click.option("--a", "a", required=True, metavar="IDS", help="Sample ids of group a, e.g. 3,17,42.")
@click.option("--b", "b", required=True, metavar="IDS", help="Sample ids of group b (subtracted).")
@click.option("--c", "c", required=True, metavar="IDS", help="Sample ids of group c (added).")
@click.option("--n", "n", type=click.IntRange(2, 1024), default=64,
              help="The --n of the numbered `sample` grid the ids come from.")
@click.option("--neighbours", type=click.IntRange(0, MAX_NEIGHBOURS), default=8,
              help="Perturbed copies of the result shown beside it.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.25,
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
    from . import generate

    groups = [_parse_ids(ctx, flag, v) for flag, v in (("--a", a), ("--b", b), ("--c", c))]
    for flag, ids in zip(("--a", "--b", "--c"), groups):
        generate.check_ids(flag, ids, n)
    L = generate.load_generator(checkpoint, bn=bn, device=device)
    fig = generate.arithmetic(L.G, L.spec, n, seed, *groups, neighbours=neighbours, noise=noise, nz=L.nz)
    generate.save_png(fig.images, out, fig.cols, row_labels=fig.row_labels, first_label="vector")
    click.echo(f"wrote a - b + c with {neighbours} neighbours (seed {seed}, bn {L.bn}) to {out}")


# ----------------------------------------------------------------------- extract


def _model_help() -> str:
    from .sources import SOURCES

    return "What to take features from: " + "; ".join(f"{k.usage} ({k.help})" for k in SOURCES.values()) + "."


def _normalize_choices() -> list[str]:
    from .sources import NORMALIZE

    return list(NORMALIZE)


@cli.command("extract")
@click.option("--model", "model_spec", default=None, metavar="SPEC", help=_model_help())
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Same as --model checkpoint:PATH.")
@click.option("--random-init", is_flag=True, help="Same as --model random:ARCH with --arch ARCH.")
@click.option("--arch", default=None, help="With --random-init: architecture (see `dcgan-features architectures`).")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=None,
              help="With random:ARCH: width. [default: the architecture's own]")
@click.option("--seed", type=int, default=0, help="Seed of a random init (random, torchvision, python) or of the K-means fit.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision/python models: a state dict file, loaded with weights_only (never runs code).")
@click.option("--image-size", type=click.IntRange(1, MAX_IMAGE_SIZE), default=None,
              help="Input size for pixels, kmeans and generic models. [default: 32]")
@click.option("--normalize", type=click.Choice(_normalize_choices()), default=None,
              help="Input scaling of generic models. [default: imagenet for torchvision, minus1to1 for python]")
@click.option("--kmeans-from", type=click.Path(dir_okay=False), default=None,
              help="kmeans:K: encode with the dictionary stored in this feature file instead of fitting one.")
@click.option("--list-layers", is_flag=True,
              help="Print every module's name, type and output shape (one forward) and exit.")
@click.option("--dataset", default=None, help="Dataset name (see `dcgan-features datasets`).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the datasets. [default: ./data]")
@click.option("--splits", default="train,test", help="Comma-separated splits to extract, one HDF5 group each.")
@click.option("--layer", "layers", default="all", metavar="all|NAMES",
              help="D blocks: all, a comma list (d1,d3) or a range (d2..d4); generic models: module names "
                   "or globs (layer1,layer2.*.conv2), all = every Conv2d after its activation.")
@click.option("--grid", type=click.IntRange(min=1), default=4, help="Max-pool each block's output to GRID x GRID.")
@click.option("--bn", type=click.Choice(["recompute", "authors", "running", "batch"]), default=None,
              help="BatchNorm: re-estimate statistics over train (the paper's way), over train as the SVHN "
                   "authors' script does it exactly, the checkpoint's, or per batch. [default: svhn authors, "
                   "others recompute]")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default=None,
              help="Stored feature dtype. [default: float32 for the paper's protocols (cifar10, svhn, also "
                   "with TF32 off on a GPU), float16 otherwise]")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=256, help="Images per forward pass.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N images of each split (quick runs, benchmarks). [default: all]")
@click.option("--out", default=None, type=click.Path(dir_okay=False), callback=_out_file,
              help="HDF5 feature file to write.")
@click.option("--overwrite", is_flag=True,
              help="Replace a file (or unfinished run) made with other settings; the old file stays until the new one is whole.")
@click.pass_context
def extract_cmd(ctx: click.Context, model_spec: str | None, checkpoint: str | None, random_init: bool,
                arch: str | None, width: int | None, seed: int, weights: str | None, image_size: int | None,
                normalize: str | None, kmeans_from: str | None, list_layers: bool, dataset: str | None,
                data_dir: str | None, splits: str, layers: str, grid: int, bn: str, dtype: str, batch_size: int,
                device: str, limit: int | None, out: str | None, overwrite: bool) -> None:
    """Features of a dataset -> HDF5: every chosen layer max-pooled to GRID x GRID, concatenated.
    Killed at any point, the same command again resumes where it stopped.

    \b
      dcgan-features extract --checkpoint runs/d/checkpoints/last.pt --dataset digits --out f.h5
      dcgan-features extract --model random:imagenet32 --dataset cifar10 --out rand.h5
      dcgan-features extract --model kmeans:1600 --dataset fashion-mnist --out km.h5
      dcgan-features extract --model torchvision:resnet18 --list-layers
      dcgan-features extract --model python:my_net.py:make --weights w.pt --layer 'layer1,layer2.*' --dataset cifar10 --out m.h5
      torchrun --standalone --nproc-per-node 8 -m dcgan_features.cli extract --checkpoint m.pt \\
          --dataset cifar10 --device cuda --out c.h5      # each GPU a share; the same file
    """
    from .extract import extract_config
    from .extract_dist import extract_any
    from .sources import SourceOptions, from_spec

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
                         kmeans_from=kmeans_from)
    model = from_spec(model_spec, opts)
    if list_layers:
        from .sources.generic import list_layers as layer_table

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
    cfg = extract_config(dataset, splits=split_list, layers=layers, grid=grid, bn=bn, dtype=dtype,
                         batch_size=batch_size, device=device, data_dir=data_dir, limit=limit, overwrite=overwrite)
    res = extract_any(model, out, cfg, log=lambda m: click.echo(m, err=True), progress=True)
    if res.get("rank", 0) != 0:  # torchrun: rank 0 reports for the group
        return
    rows = " + ".join(f"{s} {n}" for s, n in res["rows"].items())
    if res["state"] == "done":
        click.echo(f"{out} already holds {rows} rows with these settings; nothing to do")
    else:
        click.echo(f"wrote {rows} rows of {model.architecture} features to {out} "
                   f"({res['seconds']:.1f} s, {res['images_per_s']:.0f} img/s)")


# --------------------------------------------------------------------- reproduce


def _setup_default(field: str) -> str:
    return ", ".join(f"{p} {getattr(s, field)}" for p, s in SETUPS.items())


@cli.command("reproduce")
@click.argument("protocol", type=click.Choice(list(SETUPS)))
@click.option("--out", required=True, type=click.Path(file_okay=False), callback=_out_folder,
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
@click.option("--seed", type=int, default=None,
              help="Seeds training, the random D, the validation split and the label draws. [default: 0 for the "
                   "model and the random D; the protocol's for the probes (svhn: the authors' 42)]")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the probed dataset. [default: ./data]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=ReproduceConfig.device)
@click.option("--val-size", type=click.IntRange(min=1), default=None, help="Validation rows. [default: the protocol's]")
@click.option("--labels-per-class", type=click.IntRange(min=1), default=None, help="[default: the protocol's]")
@click.option("--draws", type=click.IntRange(1, MAX_DRAWS), default=None, help="Label draws. [default: the protocol's]")
@click.option("--C", "c_grid", default=None, metavar="GRID", help="Comma-separated C grid. [default: the protocol's]")
@click.option("--probe", "probes", multiple=True, default=ReproduceConfig.probes,
              type=click.Choice(["svm", "logreg", "knn"]), help="Probe(s); repeat the flag for several.")
@click.option("--blocks", is_flag=True, help="Also probe each block of the trained D alone (the per-block plot).")
@click.option("--dry-run", is_flag=True, help="Print the stages, what each would reuse or compute, and the commands.")
@click.pass_context
def reproduce_cmd(ctx: click.Context, protocol: str, out: str, checkpoint: str | None, import_theano: str | None,
                  train_dataset: str | None, train_data_dir: str | None, arch: str | None, width: int | None,
                  epochs: int | None, batch_size: int | None, seed: int, data_dir: str | None, device: str,
                  val_size: int | None, labels_per_class: int | None, draws: int | None, c_grid: str | None,
                  probes: tuple[str, ...], blocks: bool, dry_run: bool) -> None:
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
      dcgan-features reproduce digits --out runs/digits --dry-run
    """
    from .reproduce import dry_run as plan_only
    from .reproduce import run
    from .reproduce.runner import format_summary

    cfg = ReproduceConfig(protocol, out=out, checkpoint=checkpoint, import_theano=import_theano,
                          train_dataset=train_dataset, train_data_dir=train_data_dir, arch=arch, width=width,
                          epochs=epochs, batch_size=batch_size, seed=seed, data_dir=data_dir, device=device,
                          val_size=val_size, labels_per_class=labels_per_class, draws=draws,
                          c_grid=None if c_grid is None else tuple(_parse_grid(ctx, c_grid)),
                          probes=tuple(dict.fromkeys(probes)), blocks=blocks)
    if dry_run:
        click.echo(plan_only(cfg))
        return
    res = run(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(res["chain"].records()))
    click.echo(f"wrote {res['results']} and {res['report']}")


@cli.command("quickstart")
@click.option("--dataset", default=QuickstartConfig.dataset, type=click.Choice(list(SETUPS)),
              help="Dataset to train on and probe.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Root folder of the datasets. [default: ./data]")
@click.option("--arch", default=None, help="Architecture. [default: the dataset's, as `reproduce`]")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=None,
              help="Width of G and D. [default: the dataset's]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs. [default: the dataset's]")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=None, help="[default: the dataset's]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=QuickstartConfig.device)
@click.option("--seed", type=int, default=QuickstartConfig.seed)
@click.option("--probe", "probes", multiple=True, default=QuickstartConfig.probes,
              type=click.Choice(["svm", "logreg", "knn"]), help="Probe(s); repeat the flag for several.")
@click.option("--out", default=QuickstartConfig.out, type=click.Path(file_okay=False), callback=_out_folder,
              help="The reproduce run folder (model, features, probes, report).")
@click.option("--results", default=QuickstartConfig.results, type=click.Path(dir_okay=False),
              callback=lambda ctx, param, value: _out_file(ctx, param, value, parents=True),
              help="The table as CSV; the sample grid and the report are copied beside it.")
def quickstart_cmd(dataset: str, data_dir: str | None, arch: str | None, width: int | None, epochs: int | None,
                   batch_size: int | None, device: str, seed: int, probes: tuple[str, ...], out: str,
                   results: str) -> None:
    """`reproduce DATASET --train-dataset DATASET` (train on the dataset itself), with the table,
    the sample grid and the report copied to --results and beside it. `make demo` runs it.

    \b
      dcgan-features quickstart                      # digits, CPU, a few minutes
      dcgan-features quickstart --dataset fashion-mnist --width 64 --epochs 25 --device cuda \\
          --out runs/fm --results results/quickstart_fm.csv
    """
    import time

    from .quickstart import run
    from .reproduce.runner import format_summary

    t0 = time.perf_counter()
    res = run(QuickstartConfig(dataset=dataset, arch=arch, width=width, epochs=epochs, batch_size=batch_size,
                               device=device, data_dir=data_dir, seed=seed, probes=tuple(dict.fromkeys(probes)),
                               out=out, results=results),
              log=lambda m: click.echo(m, err=True))
    click.echo(format_summary(res.records))
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in res.seconds.items())
    click.echo(f"wrote {res.csv}, {res.report}" + (f" and {res.samples}" if res.samples else "")
               + f"; checkpoint {res.checkpoint}; stages: {secs}; this run {time.perf_counter() - t0:.0f} s")


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
        if not getattr(e, "quiet", False):  # a torchrun group's shared error: rank 0 prints it
            click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
