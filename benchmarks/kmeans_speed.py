"""K-means baseline cost: ``extract --model kmeans:K`` (fit on train + encode train and test), time and peak RSS.

One process loads the dataset (uint8, in memory), then times ``extract`` with the
``kmeans:K`` source end to end: the fit (400,000 random patches, ZCA, Lloyd's iterations)
and the encoding of every image of both splits to HDF5 (writer thread, fsync, rename). Peak
RSS is the process's maximum resident set (``getrusage``), data included. A row is upserted (a rerun replaces its own)
to ``results/kmeans_speed.csv``. Target (DESIGN section 7): ``kmeans:1600`` on Fashion-MNIST
(70,000 images) in under 10 minutes on the 2-core CPU, peak RSS under 4 GB.

The feature file is kept (``--out``), so ``benchmarks/accuracy.py --rows kmeans
--reuse-features`` probes the very features timed here.

    python benchmarks/kmeans_speed.py                      # fashion-mnist, K = 1600, CPU
    python benchmarks/kmeans_speed.py --dataset digits --k 64 --out /tmp/k.h5
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provenance import provenance, upsert  # noqa: E402  (benchmarks/provenance.py)
from dcgan_features.data.registry import load  # noqa: E402
from dcgan_features.core.devices import resolve_device  # noqa: E402
from dcgan_features.extract.run import ExtractConfig, extract  # noqa: E402
from dcgan_features.extract.sources import SourceOptions, from_spec  # noqa: E402

# everything that makes two rows different measurements: a rerun replaces only its own row
KEY = ("dataset", "n_images", "image_size", "k", "n_patches", "iterations", "threads", "device")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--k", type=int, default=1600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="runs/accuracy/fashion-mnist/kmeans.h5", help="feature file (kept)")
    ap.add_argument("--csv", default=str(REPO / "results" / "kmeans_speed.csv"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    device = resolve_device(args.device)
    prov = provenance(device=device.type, note=args.note)  # the load before the work
    data = {s: load(args.dataset, s, data_dir=args.data_dir, image_size=args.image_size) for s in ("train", "test")}
    n = sum(d.images.shape[0] for d in data.values())
    source = from_spec(f"kmeans:{args.k}", SourceOptions(seed=args.seed, image_size=args.image_size))
    cfg = ExtractConfig(dataset=args.dataset, splits=("train", "test"), device=args.device, data_dir=args.data_dir,
                        batch_size=args.batch_size, overwrite=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    marks: dict[str, float] = {}

    def log(msg: str) -> None:
        if msg.startswith("K-means: Lloyd"):
            marks["lloyd"] = time.perf_counter()
        print(msg, file=sys.stderr, flush=True)

    prepare = source.prepare

    def timed_prepare(*a, **kw):  # the fit is the source's preparation
        t = time.perf_counter()
        prepare(*a, **kw)
        marks["fit"] = time.perf_counter() - t

    source.prepare = timed_prepare
    t0 = time.perf_counter()
    res = extract(source, args.out, cfg, data=data, log=log)
    total = time.perf_counter() - t0
    fit = marks.get("fit", float("nan"))
    row = {"threads": torch.get_num_threads(), "dataset": args.dataset, "n_images": n, "image_size": args.image_size, "k": args.k,
           "n_patches": source.cfg.n_patches, "iterations": source.cfg.iterations, "dim": 4 * args.k,
           "fit_s": round(fit, 1), "encode_s": round(total - fit, 1), "total_s": round(total, 1),
           "img_per_s": round(n / total, 1), "peak_rss_gib": round(peak_rss_gib(), 2),
           "target": "< 600 s and < 4 GB (kmeans:1600, Fashion-MNIST, 2-core CPU)", **prov}
    out = Path(args.csv)
    upsert(out, [row], key=KEY)
    print(f"{res['state']}: {n} images, fit {fit:.0f} s, total {total:.0f} s, peak RSS {row['peak_rss_gib']} GiB "
          f"-> {out}")


if __name__ == "__main__":
    main()
