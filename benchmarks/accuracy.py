"""Linear separability of DCGAN features against baselines: results/accuracy.csv and results/per_block.png.

For one dataset and one trained checkpoint, every feature set goes through the same probes
under the dataset's protocol (dcgan_features.probes.protocols; C always chosen on validation rows):

* ``pixels``     the raw model input (3 x S x S in [-1, 1]): source ``pixels``;
* ``random D``   every block of a randomly initialised D of the checkpoint's architecture
                 and width (seed 0), BN re-estimated on train like the trained one: ``random:ARCH``;
* ``trained D``  every block of the checkpoint's D (``--bn``, default recompute; svhn: authors): ``checkpoint:PATH``;
* ``trained D`` each block alone: the columns of that block, read from the same file;
* ``K-means``    the 1-layer K-means network of Coates, Lee & Ng (2011), K = ``--kmeans-k``,
                 fitted on the train split (``--kmeans-init``: run_kmeans.m's randn, or random
                 patches, row ``K-means, patches init``): ``kmeans:K``; ``probe`` standardizes the
                 features as their recipe does (train mean, sqrt(var + 0.01)), recorded in the file.

``--rows`` picks which (default: pixels, random, trained; the K-means fit and encoding
take minutes on a CPU, so it is asked for by name).

Features go through HDF5 files in ``--work-dir`` (rewritten on every run: the checkpoint may
have changed under the same name), exactly as
``dcgan-features extract`` writes them. Rows of ``--out`` that this run measures again (same
dataset, protocol column, feature set, architecture, blocks and probe) are replaced, all others
kept; the paper's Table 1 (CIFAR-10) and Table 2 (SVHN) rows are
always present, with ``features`` starting ``paper:`` and the number in ``paper_value``
only. ``--plot`` redraws results/per_block.png from the CSV.

    python benchmarks/accuracy.py --dataset digits --checkpoint runs/quickstart/checkpoints/last.pt
    python benchmarks/accuracy.py --dataset fashion-mnist --checkpoint runs/fm/checkpoints/last.pt --device cuda
    python benchmarks/accuracy.py --dataset fashion-mnist --rows kmeans --kmeans-k 1600
    python benchmarks/accuracy.py --dataset digits --rows kmeans --kmeans-init patches --no-draws --probes svm
    python benchmarks/accuracy.py --plot-only
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_features.probes.records import CSV_COLUMNS, csv_value  # noqa: E402
from dcgan_features.reproduce.chain import block_rows  # noqa: E402  (one block's columns of a feature file)
from dcgan_features.reproduce.paper import paper_records  # noqa: E402  (the paper's Tables 1 and 2)

from provenance import PROVENANCE, provenance, upsert  # noqa: E402  (benchmarks/provenance.py)

ROWS = ("pixels", "random", "trained", "kmeans")

# --rows names -> (row label, SPEC of the feature source); every row's features come from
# `extract --model SPEC` (dcgan_features.extract.sources), written to HDF5 and read back by the probes.
def row_sources(args, arch: str | None, width: int | None) -> dict[str, tuple[str, object]]:
    from dcgan_features.extract.sources import SourceOptions, from_spec
    from dcgan_features.extract.sources.discriminator import checkpoint_model, random_init_model
    from dcgan_features.extract.sources.kmeans import KMeansSource
    from dcgan_features.extract.sources.kmeans_recipe import KMeansConfig

    size = SourceOptions(image_size=args.image_size)
    makers = {
        "pixels": ("pixels", lambda: from_spec("pixels", size)),
        "random": ("random D", lambda: random_init_model(arch, width, seed=0)),
        "trained": ("trained D", lambda: checkpoint_model(args.checkpoint)),
        # seed 0, as the random D's: --seed is the protocol's (None means the protocol's own)
        "kmeans": ("K-means" if args.kmeans_init == "randn" else f"K-means, {args.kmeans_init} init",
                   lambda: KMeansSource(args.kmeans_k, 0, args.image_size, init=args.kmeans_init,
                                        config=KMeansConfig(n_patches=args.kmeans_patches))),
    }
    return {row: makers[row] for row in args.rows}


def run_dataset(args) -> list[dict]:
    from dcgan_features.nets.architectures import get_arch
    from dcgan_features.nets.checkpoint import load as load_ckpt
    from dcgan_features.data.registry import load
    from dcgan_features.extract.run import extract, extract_config
    from dcgan_features.probes.protocols import Features, from_file, get_protocol, run_protocol
    from dcgan_features.extract.store import FeatureFile

    arch = width = None
    if args.checkpoint:
        ckpt = load_ckpt(args.checkpoint)
        arch, width = ckpt["arch"], int(ckpt["width"])
        args.image_size = args.image_size or get_arch(arch).image_size
    args.image_size = args.image_size or 32
    # --no-full keeps only the few-labels column: on a 2-core CPU the full column (C grid on
    # 50000 rows, refit on all) of six feature sets takes hours; the draws take minutes.
    cfg = get_protocol(args.dataset, draws=args.draws, full=False if args.no_full else None)
    if args.no_draws:  # only the column fitted on every label
        cfg = dataclasses.replace(cfg, labels_per_class=None)
    probes = tuple(args.probes.split(","))
    work = Path(args.work_dir) / args.dataset
    kmeans_file = f"kmeans_{args.kmeans_init}.h5"
    work.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    splits = (cfg.train_split, cfg.test_split)
    data = {s: load(args.dataset, s, data_dir=args.data_dir, image_size=args.image_size) for s in splits}
    ecfg = extract_config(args.dataset, splits=splits, bn=args.bn, device=args.device,  # the paper's where it applies
                          data_dir=args.data_dir, batch_size=args.batch_size, overwrite=not args.reuse_features,
                          limit=args.limit)
    run_kw = dict(config=cfg, seed=args.seed, device=args.device, log=say, backend=args.backend)
    records: list[dict] = []

    def probe(feats, name: str, note: str, standardize: bool = False) -> None:
        t0 = time.perf_counter()
        recs = run_protocol(args.dataset, feats, probes, standardize=standardize, **run_kw)
        for r in recs:
            r.update(features=name, note=note)
        records.extend(recs)
        say(f"{name} [{feats.describe.get('layers', '')}]: done in {time.perf_counter() - t0:.0f} s")

    for row, (name, make) in row_sources(args, arch, width).items():
        source = make()
        path = work / (f"trained_{Path(args.checkpoint).stem}.h5" if row == "trained"
                       else kmeans_file if row == "kmeans" else f"{row}.h5")
        say(f"extract {name} ({source.spec}) -> {path}")
        t0 = time.perf_counter()
        extract(source, path, ecfg, data=data, log=say)
        say(f"extract {name}: {time.perf_counter() - t0:.0f} s")
        with FeatureFile(path) as ff:
            bn = ff.meta.get("bn_mode")
            feats = from_file(ff, cfg, device=args.device)
            if row == "pixels":
                feats.describe.update(architecture="", checkpoint="", layers="pixels")
                probe(feats, name, f"raw input 3x{args.image_size}^2")
            elif row == "kmeans":
                feats.describe.update(architecture="", checkpoint="", layers=source.spec)
                # the file records Coates et al.'s standardisation; run_protocol applies it by default
                init = ("randn x 0.1, empty clusters zeroed (run_kmeans.m)" if args.kmeans_init == "randn"
                        else "random patches, empty clusters re-seeded (ours)")
                probe(feats, name, f"Coates, Lee & Ng 2011 recipe: 6x6 patches at {args.image_size}x"
                      f"{args.image_size}, K={args.kmeans_k}, {args.kmeans_patches} patches, 4 quadrants; init {init}; features standardized "
                      f"by probe from the file's postprocess={ff.meta.get('postprocess')} (train mean, "
                      f"sqrt(var + 0.01))")
            else:
                feats.describe.update(architecture=arch, checkpoint=Path(args.checkpoint).name if row == "trained"
                                      else "random-init seed 0")
                probe(feats, name, f"all blocks, bn {bn}, width {width}")
            if row == "trained" and args.blocks:
                lo = 0
                for layer, dim in zip(ff.meta["layers"], ff.meta["layer_dims"]):
                    one = Features(block_rows(ff, cfg.train_split, lo, lo + dim),
                                   block_rows(ff, cfg.test_split, lo, lo + dim),
                                   {**feats.describe, "layers": layer, "dim": dim})
                    probe(one, name, f"block {layer} alone, bn {bn}, width {width}")
                    lo += dim
    return records


# ------------------------------------------------------------------------------ output


# A row measures one probe of one feature set of one model under one protocol column on one
# machine; a rerun replaces exactly the rows it measures again, so the tables of several models
# (a CPU dcgan32, a GPU imagenet32) and machines of one dataset live side by side.
ROW_KEY = ("dataset", "protocol", "features", "architecture", "trained_on", "layers", "probe", "device")


def write(out: Path, new: list[dict]) -> None:
    """``new`` and the paper's rows into ``out`` through provenance.upsert: other rows stay."""
    paper = [{**r, "kind": "paper", "commit": "", "device": ""} for r in paper_records()]
    cells = [{c: csv_value(r.get(c)) for c in CSV_COLUMNS + PROVENANCE} for r in new + paper]
    upsert(out, cells, key=ROW_KEY)


def plot(csv_path: Path, png: Path) -> None:
    """One panel per dataset and architecture: each block alone, all blocks and the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r["features"].startswith("paper:") and r["mean"]]
    is_block = lambda r: r["features"] == "trained D" and "+" not in r["layers"]  # noqa: E731
    # One panel per (dataset, architecture) that has one-block rows, in the first protocol
    # column holding them; baselines (all blocks, random D, pixels) from the same column.
    panels = list(dict.fromkeys((r["dataset"], r["architecture"]) for r in rows if is_block(r)))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (ds, arch) in zip(axes[0], panels):
        rs = [r for r in rows if r["dataset"] == ds and r["architecture"] in (arch, "")]
        column = next(c for c in ("/all", "-per-class")
                      if any(is_block(r) and r["protocol"].endswith(c) for r in rs))
        rs = [r for r in rs if r["protocol"].endswith(column)]
        for probe, style in (("svm", "-o"), ("logreg", "--s")):
            pr = [r for r in rs if r["probe"] == probe]
            blocks = [r for r in pr if is_block(r)]
            if not blocks:
                continue
            line, = ax.plot([r["layers"] for r in blocks], [float(r["mean"]) for r in blocks], style,
                            label=f"{probe}: one block")
            for feat, ls in (("trained D", "-"), ("random D", ":"), ("pixels", "-."), ("K-means", (0, (4, 1, 1, 1, 1, 1)))):
                ref = [r for r in pr if r["features"] == feat and not is_block(r)]
                if ref:
                    ax.axhline(float(ref[0]["mean"]), color=line.get_color(), ls=ls, lw=1,
                               label=f"{probe}: {'all blocks' if feat == 'trained D' else feat}")
        metric = rs[0]["metric"] if rs else "accuracy"
        ax.set_title(f"{ds}, {arch} ({rs[0]['protocol'] if rs else ''})")
        ax.set_xlabel("D block (4x4 max-pooled)")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["digits", "fashion-mnist", "cifar10", "svhn"])
    ap.add_argument("--checkpoint", help="trained checkpoint (train or import-theano); needed by the random "
                    "and trained rows")
    ap.add_argument("--rows", default="pixels,random,trained",
                    help=f"feature sets to measure, from {','.join(ROWS)} [default: %(default)s]")
    ap.add_argument("--kmeans-k", type=int, default=1600, help="K of the kmeans row [default: %(default)s]")
    ap.add_argument("--kmeans-init", default="randn", choices=["randn", "patches"],
                    help="K-means start: run_kmeans.m's randn x 0.1, or random patches [default: %(default)s]")
    ap.add_argument("--kmeans-patches", type=int, default=400_000,
                    help="patches the K-means dictionary is fitted on (the recipe's: %(default)s; fewer is a "
                         "subset: say so in --notes)")
    ap.add_argument("--backend", default="torch", choices=["torch", "sklearn"], help="probe solver")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N images of each split (a subset: say so in --notes) [default: all]")
    ap.add_argument("--image-size", type=int, default=None,
                    help="input size of pixels and kmeans [default: the checkpoint architecture's, else 32]")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--probes", default="svm,logreg")
    ap.add_argument("--bn", default=None, choices=["recompute", "authors", "running", "batch"],
                    help="[default: the dataset's paper extraction: svhn authors, others recompute]")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--draws", type=int, default=None, help="few-labels draws [default: the protocol's]")
    ap.add_argument("--seed", type=int, default=None, help="protocol seed [default: the protocol's: 0, svhn 42]")
    ap.add_argument("--no-blocks", dest="blocks", action="store_false", help="skip the one-block rows")
    ap.add_argument("--no-full", action="store_true",
                    help="only the few-labels column (no fit on every label); for CPU-sized runs")
    ap.add_argument("--note", "--notes", dest="note", default="",
                    help="free text added to every row (machine load, training run, ...)")
    ap.add_argument("--work-dir", default="runs/accuracy", help="feature files (rewritten on every run)")
    ap.add_argument("--reuse-features", action="store_true",
                    help="keep a feature file in --work-dir made with the same settings (e.g. by "
                         "benchmarks/kmeans_speed.py); one made otherwise is then an error")
    ap.add_argument("--out", default=str(REPO / "results" / "accuracy.csv"))
    ap.add_argument("--plot", default=str(REPO / "results" / "per_block.png"))
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.plot_only:
        args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
        if not args.dataset:
            ap.error("--dataset is required (or --plot-only)")
        if any(r not in ROWS for r in args.rows):
            ap.error(f"--rows takes names from {','.join(ROWS)}")
        if not args.checkpoint and {"random", "trained"} & set(args.rows):
            ap.error("the random and trained rows need --checkpoint (or choose --rows pixels,kmeans)")
        prov = provenance(device=args.device)  # the load at the start; the machine is each record's own
        recs = run_dataset(args)
        for r in recs:
            r.update({k: v for k, v in prov.items() if k != "device"},
                     note="; ".join(x for x in (r.get("note", ""), args.note) if x))
        write(out, recs)
        print(f"wrote {len(recs)} rows for {args.dataset} to {out}")
    plot(out, Path(args.plot))
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
