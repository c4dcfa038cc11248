"""Linear separability of DCGAN features against baselines: results/accuracy.csv and results/per_block.png.

For one dataset and one trained checkpoint, every feature set goes through the same probes
under the dataset's protocol (dcgan_features.probes.protocols; C always chosen on validation rows):

* ``pixels``     the raw model input (3 x S x S in [-1, 1]);
* ``random D``   every block of a randomly initialised D of the checkpoint's architecture
                 and width (seed 0), BN re-estimated on train like the trained one;
* ``trained D``  every block of the checkpoint's D (``--bn``, default recompute);
* ``trained D`` each block alone: the columns of that block, read from the same file.

Features go through HDF5 files in ``--work-dir`` (rewritten on every run: the checkpoint may
have changed under the same name), exactly as
``dcgan-features extract`` writes them. Rows of ``--out`` that this run measures again (same
dataset, protocol column, feature set, architecture, blocks and probe) are replaced, all others
kept; the paper's Table 1 (CIFAR-10) and Table 2 (SVHN) rows are
always present, with ``features`` starting ``paper:`` and the number in ``paper_value``
only. ``--plot`` redraws results/per_block.png from the CSV.

    python benchmarks/accuracy.py --dataset digits --checkpoint runs/quickstart/checkpoints/last.pt
    python benchmarks/accuracy.py --dataset fashion-mnist --checkpoint runs/fm/checkpoints/last.pt --device cuda
    python benchmarks/accuracy.py --plot-only
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_features.atomic import write_csv_atomic  # noqa: E402
from dcgan_features.records import CSV_COLUMNS, csv_value  # noqa: E402

EXTRA_COLUMNS = ("notes", "date", "command")

# Radford, Metz & Chintala (2015), Table 1 (CIFAR-10, accuracy %, features of a DCGAN
# trained on ImageNet-1k; the paper's column "Accuracy (400 per class)" is mean +- std of 10
# draws) and Table 2 (SVHN, 1000 labels, test error %). The paper's figures, quoted, not ours.
PAPER_ROWS = [
    ("cifar10", "cifar10/all", "paper: 1 Layer K-means", "accuracy", 80.6),
    ("cifar10", "cifar10/400-per-class", "paper: 1 Layer K-means", "accuracy", 63.7),
    ("cifar10", "cifar10/all", "paper: 3 Layer K-means Learned RF", "accuracy", 82.0),
    ("cifar10", "cifar10/400-per-class", "paper: 3 Layer K-means Learned RF", "accuracy", 70.7),
    ("cifar10", "cifar10/all", "paper: View Invariant K-means", "accuracy", 81.9),
    ("cifar10", "cifar10/400-per-class", "paper: View Invariant K-means", "accuracy", 72.6),
    ("cifar10", "cifar10/all", "paper: Exemplar CNN", "accuracy", 84.3),
    ("cifar10", "cifar10/400-per-class", "paper: Exemplar CNN", "accuracy", 77.4),
    ("cifar10", "cifar10/all", "paper: DCGAN (ours) + L2-SVM", "accuracy", 82.8),
    ("cifar10", "cifar10/400-per-class", "paper: DCGAN (ours) + L2-SVM", "accuracy", 73.8),
    ("svhn", "svhn/100-per-class", "paper: KNN", "error", 77.93),
    ("svhn", "svhn/100-per-class", "paper: TSVM", "error", 66.55),
    ("svhn", "svhn/100-per-class", "paper: M1+M2", "error", 36.02),
    ("svhn", "svhn/100-per-class", "paper: SWWAE without dropout", "error", 27.83),
    ("svhn", "svhn/100-per-class", "paper: SWWAE with dropout", "error", 23.56),
    ("svhn", "svhn/100-per-class", "paper: DCGAN (ours) + L2-SVM", "error", 22.48),
    ("svhn", "svhn/100-per-class", "paper: Supervised CNN, same architecture", "error", 28.87),
]


def paper_records() -> list[dict]:
    return [{"dataset": d, "protocol": p, "features": f, "probe": "svm" if "L2-SVM" in f else "",
             "metric": m, "paper_value": v, "notes": "the paper's figure (Radford et al. 2015), quoted"}
            for d, p, f, m, v in PAPER_ROWS]


# --------------------------------------------------------------------------- features


def block_rows(ff, split: str, lo: int, hi: int):
    """The columns [lo, hi) of a feature-file split (one block's features), in memory as float16."""
    from dcgan_features.probes.rows import ArrayRows

    X = torch.empty((ff.n_rows(split), hi - lo), dtype=torch.float16)
    for s, x in ff.iter_chunks(split, device="cpu"):
        X[s:s + x.shape[0]] = x[:, lo:hi].to(torch.float16)
    return ArrayRows(X, ff.labels(split), split=split)


def run_dataset(args) -> list[dict]:
    from dcgan_features.architectures import get_arch
    from dcgan_features.checkpoint import load as load_ckpt
    from dcgan_features.data import load
    from dcgan_features.extract import ExtractConfig, checkpoint_model, extract, random_init_model
    from dcgan_features.features import to_model_input
    from dcgan_features.probes.protocols import Features, from_arrays, from_file, get_protocol, run_protocol
    from dcgan_features.store import FeatureFile

    ckpt = load_ckpt(args.checkpoint)
    arch, width = ckpt["arch"], int(ckpt["width"])
    spec = get_arch(arch)
    # --no-full keeps only the few-labels column: on a 2-core CPU the full column (C grid on
    # 50000 rows, refit on all) of six feature sets takes hours; the draws take minutes.
    cfg = get_protocol(args.dataset, draws=args.draws, full=False if args.no_full else None)
    probes = tuple(args.probes.split(","))
    work = Path(args.work_dir) / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    splits = (cfg.train_split, cfg.test_split)
    data = {s: load(args.dataset, s, data_dir=args.data_dir, image_size=spec.image_size) for s in splits}
    ecfg = ExtractConfig(dataset=args.dataset, splits=splits, bn=args.bn, device=args.device,
                         data_dir=args.data_dir, batch_size=args.batch_size, overwrite=True)
    files = {"trained D": work / f"trained_{Path(args.checkpoint).stem}.h5", "random D": work / "random.h5"}
    for name, model in (("trained D", checkpoint_model(args.checkpoint)),
                        ("random D", random_init_model(arch, width, seed=0))):
        say(f"extract {name} -> {files[name]}")
        extract(model, files[name], ecfg, data=data, log=say)

    run_kw = dict(config=cfg, seed=args.seed, device=args.device, log=say)
    described = {"architecture": arch, "checkpoint": Path(args.checkpoint).name}
    records: list[dict] = []

    def probe(feats, name: str, notes: str) -> None:
        t0 = time.perf_counter()
        recs = run_protocol(args.dataset, feats, probes, **run_kw)
        for r in recs:
            r.update(features=name, notes=notes)
        records.extend(recs)
        say(f"{name} [{feats.describe.get('layers', '')}]: done in {time.perf_counter() - t0:.0f} s")

    tr, te = data[cfg.train_split], data[cfg.test_split]
    flat = lambda im: to_model_input(im, "cpu").flatten(1)  # noqa: E731  (the model's input, flattened)
    probe(from_arrays(flat(tr.images), tr.labels.numpy(), flat(te.images), te.labels.numpy(), name="pixels",
                      dataset=args.dataset, layers="pixels"), "pixels", f"raw input 3x{spec.image_size}^2")
    for name in ("random D", "trained D"):
        with FeatureFile(files[name]) as ff:
            bn = ff.meta.get("bn_mode")
            feats = from_file(ff, cfg, device=args.device)
            feats.describe.update(described if name == "trained D"
                                  else {"architecture": arch, "checkpoint": "random-init seed 0"})
            probe(feats, name, f"all blocks, bn {bn}, width {width}")
            if name == "trained D" and args.blocks:
                lo = 0
                for layer, dim in zip(ff.meta["layers"], ff.meta["layer_dims"]):
                    one = Features(block_rows(ff, cfg.train_split, lo, lo + dim),
                                   block_rows(ff, cfg.test_split, lo, lo + dim),
                                   {**feats.describe, "layers": layer, "dim": dim})
                    probe(one, name, f"block {layer} alone, bn {bn}, width {width}")
                    lo += dim
    return records


# ------------------------------------------------------------------------------ output


# A row measures one probe of one feature set of one model under one protocol column; a rerun
# replaces exactly the rows it measures again, so the tables of several models (a CPU dcgan32,
# a GPU imagenet32) of one dataset live side by side.
ROW_KEY = ("dataset", "protocol", "features", "architecture", "layers", "probe")


def merge(out: Path, new: list[dict]) -> list[dict]:
    """Rows of ``out`` not measured again in ``new``, then ``new``, then the paper's rows."""
    keep = []
    renewed = {tuple(csv_value(r.get(k)) for k in ROW_KEY) for r in new}  # as the cells are written
    if out.exists():
        with open(out, newline="") as f:
            keep = [r for r in csv.DictReader(f)
                    if not r["features"].startswith("paper:") and tuple(r[k] for k in ROW_KEY) not in renewed]
    return keep + new + paper_records()


def write(out: Path, rows: list[dict]) -> None:
    write_csv_atomic(out, CSV_COLUMNS + EXTRA_COLUMNS, rows, value=csv_value)


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
            for feat, ls in (("trained D", "-"), ("random D", ":"), ("pixels", "-.")):
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
    ap.add_argument("--checkpoint", help="trained checkpoint (train or import-theano)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--probes", default="svm,logreg")
    ap.add_argument("--bn", default="recompute", choices=["recompute", "running", "batch"])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--draws", type=int, default=None, help="few-labels draws [default: the protocol's]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-blocks", dest="blocks", action="store_false", help="skip the one-block rows")
    ap.add_argument("--no-full", action="store_true",
                    help="only the few-labels column (no fit on every label); for CPU-sized runs")
    ap.add_argument("--notes", default="", help="free text added to every row (machine load, training run, ...)")
    ap.add_argument("--work-dir", default="runs/accuracy", help="feature files (rewritten on every run)")
    ap.add_argument("--out", default=str(REPO / "results" / "accuracy.csv"))
    ap.add_argument("--plot", default=str(REPO / "results" / "per_block.png"))
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.plot_only:
        if not (args.dataset and args.checkpoint):
            ap.error("--dataset and --checkpoint are required (or --plot-only)")
        command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        stamp = time.strftime("%Y-%m-%d")
        recs = run_dataset(args)
        for r in recs:
            r.update(date=stamp, command=command,
                     notes="; ".join(x for x in (r.get("notes", ""), args.notes) if x))
        write(out, merge(out, recs))
        print(f"wrote {len(recs)} rows for {args.dataset} to {out}")
    plot(out, Path(args.plot))
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
