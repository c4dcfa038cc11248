"""K-means baseline cost: ``extract --model kmeans:K`` (fit on train + encode train and test), at the machine's pace.

One process loads the dataset (uint8, in memory), then times ``extract`` with the
``kmeans:K`` source end to end: the fit (400,000 random patches, ZCA, Lloyd's iterations)
and the encoding of every image of both splits to HDF5 (writer thread, fsync, rename). Peak
RSS is the process's maximum resident set (``getrusage``), data included. The machine's
matmul rate is measured before and after at the same threads (``yardstick.py``): the row
gives the fit's and the encoding's achieved GFLOP/s (their GEMMs' flops, :func:`flops`) and
their fractions of that rate, and predicts the recipe at full size from those fractions.
A row is upserted into ``results/kmeans_speed.csv`` (key: ``case``, ``threads``, ``device``). Targets (DESIGN
section 7, issue 26): ``kmeans:1600`` on Fashion-MNIST (70,000 images) in under 10 minutes on
a quiet 2-core CPU, peak RSS under 4 GB; the encoding at >= 50% of the yardstick.

The feature file is kept (``--out``), so ``benchmarks/accuracy.py --rows kmeans
--reuse-features`` probes the very features timed here.

    python benchmarks/kmeans_speed.py                      # fashion-mnist, K = 1600, CPU
    python benchmarks/kmeans_speed.py --n-images 3000 --n-patches 100000 --iterations 5 --out /tmp/k.h5  # bounded
    python benchmarks/kmeans_speed.py --dataset digits --k 64 --out /tmp/k.h5
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import provenance, upsert  # noqa: E402
from benchmarks.yardstick import Yardstick  # noqa: E402
from dcgan_features.data.registry import load  # noqa: E402
from dcgan_features.core.devices import resolve_device  # noqa: E402
from dcgan_features.extract.run import ExtractConfig, extract  # noqa: E402
from dcgan_features.extract.sources import SourceOptions, from_spec  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def flops(n_images: int, positions: int, n_patches: int, iterations: int, k: int, d: int, r: int) -> tuple[float, float]:
    """(fit, encode) floating-point operations of the recipe's GEMMs: the fit's covariance, whitening and
    Lloyd's assignments (2 n r K per iteration); the encoding's whitening and distances (2 (r + 2) K per
    position, the augmented GEMM of kmeans_recipe._encode_chunk)."""
    fit = 2.0 * n_patches * d * d + 2.0 * n_patches * d * r + iterations * 2.0 * n_patches * r * k
    encode = n_images * positions * (2.0 * d * r + 2.0 * (r + 2) * k)
    return fit, encode


def subset(data: dict, n: int | None) -> dict:
    """The first ``n`` images of each split (all: None)."""
    if not n:
        return data
    return {s: replace(d, images=d.images[:n], labels=d.labels[:n]) for s, d in data.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--k", type=int, default=1600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n-images", type=int, default=None, help="first N images of each split [default: all]")
    ap.add_argument("--n-patches", type=int, default=None, help="patches the fit samples [default: the recipe's]")
    ap.add_argument("--iterations", type=int, default=None, help="Lloyd's iterations [default: the recipe's]")
    ap.add_argument("--out", default="runs/accuracy/fashion-mnist/kmeans.h5", help="feature file (kept)")
    ap.add_argument("--csv", default=str(REPO / "results" / "kmeans_speed.csv"))
    ap.add_argument("--note", default="")
    ap.add_argument("--quiet-gflops", type=float, default=None,
                    help="a quiet machine's matmul rate at these threads, for a second prediction of the full "
                         "run (e.g. `python benchmarks/yardstick.py` on an idle machine)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    full = {s: load(args.dataset, s, data_dir=args.data_dir, image_size=args.image_size) for s in ("train", "test")}
    data = subset(full, args.n_images)
    n, n_full = (sum(d.images.shape[0] for d in x.values()) for x in (data, full))
    source = from_spec(f"kmeans:{args.k}", SourceOptions(seed=args.seed, image_size=args.image_size))
    recipe = source.cfg
    source.cfg = replace(recipe, **{k: v for k, v in (("n_patches", args.n_patches), ("iterations", args.iterations))
                                    if v is not None})
    cfg = ExtractConfig(dataset=args.dataset, splits=("train", "test"), device=args.device, data_dir=args.data_dir,
                        batch_size=args.batch_size, overwrite=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    marks: dict[str, float] = {}
    prepare = source.prepare

    def timed_prepare(*a, **kw):  # the fit is the source's preparation
        t = time.perf_counter()
        prepare(*a, **kw)
        marks["fit"] = time.perf_counter() - t

    source.prepare = timed_prepare
    threads = torch.get_num_threads()
    stick = Yardstick.start(threads) if device.type == "cpu" else None
    t0 = time.perf_counter()
    res = extract(source, args.out, cfg, data=data, log=lambda m: print(m, file=sys.stderr, flush=True),
                  progress=True)
    total = time.perf_counter() - t0
    fit = marks.get("fit", float("nan"))
    H, C = data["train"].images.shape[2], 3
    positions = (H - recipe.patch + 1) ** 2
    dim, r = C * recipe.patch ** 2, int(source.fitted.whitening.shape[1])
    f_fit, f_enc = flops(n, positions, source.cfg.n_patches, source.cfg.iterations, args.k, dim, r)
    row = {"case": f"{args.dataset} kmeans:{args.k}" + (f" first {args.n_images}" if args.n_images else ""),
           "dataset": args.dataset, "n_images": n, "image_size": args.image_size, "k": args.k,
           "n_patches": source.cfg.n_patches, "iterations": source.cfg.iterations, "dim": 4 * args.k,
           "whitened_dims": r, "fit_s": round(fit, 1), "encode_s": round(total - fit, 1), "total_s": round(total, 1),
           "img_per_s": round(n / total, 1), "peak_rss_gib": round(peak_rss_gib(), 2),
           "target": "< 600 s and < 4 GB (kmeans:1600, Fashion-MNIST, quiet 2-core CPU); encode >= 50% of the yardstick"}
    if stick is not None:
        enc = stick.columns(f_enc, total - fit)
        rate = enc["yardstick_gflops"]
        fit_gflops = f_fit / fit / 1e9
        row.update({"fit_gflops": round(fit_gflops, 2), "fit_fraction": round(fit_gflops / rate, 3),
                    "encode_gflops": enc["gflops"], "encode_fraction": enc["fraction"],
                    **{k: v for k, v in enc.items() if k.startswith("yardstick") or k == "threads"}})
        # the recipe at full size (every image, its patches and iterations) at this run's fractions
        F_fit, F_enc = flops(n_full, positions, recipe.n_patches, recipe.iterations, args.k, dim, r)
        for name, at in (("predicted_full_s_at_this_yardstick", rate), ("predicted_full_s_at_quiet_gflops",
                                                                           args.quiet_gflops)):
            if at:
                row[name] = round(F_fit / (row["fit_fraction"] * at * 1e9) + F_enc / (enc["fraction"] * at * 1e9))
    row.update(provenance("measured", str(device), args.note))
    row.setdefault("threads", torch.get_num_threads())
    upsert(args.csv, [row], key=("case", "threads", "device"))
    print(f"{res['state']}: {n} images, fit {fit:.0f} s, total {total:.0f} s, peak RSS {row['peak_rss_gib']} GiB "
          f"-> {args.csv}\n{row}")


if __name__ == "__main__":
    main()
