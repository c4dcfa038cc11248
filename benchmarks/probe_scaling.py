"""The scaling model of the distributed probe solver: pass time against rows per rank and all-reduce size.

A pass over the rows (one Hessian-vector product, the bulk of the ~1300 passes of a C grid)
reads each rank's share of X twice (``X V`` and ``X^T R``) and multiplies it by ``m`` columns
(C values x classes), then sums a (D+1) x m float32 matrix over the ranks::

    t_pass(n, m, W) = k * max(4 n D m / F, 2 n D 4 / B) + t_allreduce
    t_allreduce     = 2 (W - 1) / W * (D + 1) m 4 / busbw + latency      (ring all-reduce; 0 for W = 1)

with ``n`` rows per rank, ``F`` the device's float32 (TF32 on a GPU) matmul rate, ``B`` its
memory bandwidth and ``k`` an efficiency factor fitted to one measured single-device pass
time. The grid time is the setup plus ``grid_passes`` passes.

Inputs, each said in the row it makes: the CPU rows of ``results/probe_dist.csv`` measured
here (``probe_speed.py --distributed``; ``k`` from the 1-rank row, the 2-rank row is then
predicted beside its measurement), and the H100 row of ``results/probe_speed.csv`` (the whole
50000 x 28672 L2-SVM grid on one H100: fit seconds / passes is an upper bound of its pass
time, since it includes the setup). The H100's F, B and NVLink all-reduce figures are
datasheet or assumed values, named in ``note``. Every row this script writes has
``kind=predicted``.

    python benchmarks/probe_scaling.py      # writes the predicted rows of results/probe_dist.csv (a rerun replaces them)
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
IMAGENET_ROWS, DIM = 1_281_167, 28672
H100 = dict(F=400e12, B=3.35e12, busbw=300e9, latency=30e-6)  # TF32 dense ~400 of 495 TFLOP/s spec; HBM3


def pass_seconds(n: int, m: int, world: int, k: float, F: float, B: float, busbw: float, latency: float,
                 dim: int = DIM) -> tuple[float, float]:
    """(pass time, its all-reduce part) for ``n`` rows per rank, ``m`` columns, ``world`` ranks."""
    compute = 4 * n * dim * m / F
    memory = 2 * n * dim * 4 / B
    ar = 0.0 if world == 1 else 2 * (world - 1) / world * (dim + 1) * m * 4 / busbw + latency
    return k * max(compute, memory) + ar, ar


# everything that makes two rows different: a rerun replaces its predictions, never a measurement
KEY = ("kind", "case", "device", "ranks", "rows_per_rank", "dim", "probe", "columns")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", type=Path, default=RESULTS / "probe_dist.csv",
                    help="the table: read for the measured rows, written with the predicted ones")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance, upsert

    prov = {**provenance(kind="predicted"), "load": ""}  # a prediction has no machine load
    dist = list(csv.DictReader(open(args.out)))
    cpu = [r for r in dist if r["kind"] == "measured" and r["case"] == "cifar10-sized"]
    one = next(r for r in cpu if r["ranks"] == "1")
    n1, m, dim = int(one["rows_per_rank"]), int(one["columns"]), int(one["dim"])
    # CPU: matmul-bound; k * 4 n D m / F folded into one constant per row-column-dim
    c = float(one["pass_seconds"]) / (n1 * dim * m)
    speed = next(r for r in csv.DictReader(open(RESULTS / "probe_speed.csv"))
                 if r["device"].startswith("NVIDIA H100") and r["case"] == "cifar10-sized" and r["probe"] == "svm")
    h_pass = float(speed["fit_seconds"]) / int(speed["passes"])
    hk = h_pass / max(4 * 50000 * DIM * 40 / H100["F"], 2 * 50000 * DIM * 4 / H100["B"])
    rows = []
    for r in cpu:
        if r is one:  # the row the model is fitted to
            continue
        ar = float(r["allreduce_seconds"])  # measured gloo all-reduce of this size
        t = c * int(r["rows_per_rank"]) * dim * m + ar
        rows.append({**{k: r[k] for k in ("device", "case", "ranks", "rows_total", "rows_per_rank", "dim", "probe",
                                         "columns", "allreduce_mb", "grid_passes")},
                     **prov, "pass_seconds": f"{t:.3f}",
                     "allreduce_seconds": ar, "setup_seconds": "", "passes_timed": "",
                     "grid_seconds": round(int(r["grid_passes"]) * t),
                     "source": f"1-rank measured pass {one['pass_seconds']} s ({one['date']}) scaled by rows per "
                               f"rank, plus the measured all-reduce",
                     "note": "what 2 ranks would take on 2 free cores; compare with the measured row of the "
                              "same ranks, whose cores were shared"})
    for world, m_cols, what in ((1, 40, "10 classes"), (8, 40, "10 classes"), (8, 4000, "ImageNet 1000 classes")):
        n = -(-IMAGENET_ROWS // world)
        t, ar = pass_seconds(n, m_cols, world, hk, **H100)
        mem = (n * DIM * 4 + 6 * n * m_cols * 4) / 2**30  # X share + ~6 row-space tensors of the solver
        rows.append({**prov, "device": "8x NVIDIA H100 80GB (model)" if world > 1 else "NVIDIA H100 80GB (model)",
                     "case": "imagenet32-sized", "ranks": world, "rows_total": IMAGENET_ROWS,
                     "rows_per_rank": n, "dim": DIM, "probe": "svm", "columns": m_cols,
                     "allreduce_mb": f"{(DIM + 1) * m_cols * 4 / 2**20:.2f}",
                     "pass_seconds": f"{t:.4f}", "allreduce_seconds": f"{ar:.5f}", "setup_seconds": "",
                     "passes_timed": "", "grid_passes": 1333, "grid_seconds": round(1333 * t),
                     "source": f"k={hk:.2f} from the H100 svm grid row of probe_speed.csv ({speed['date']}: "
                               f"{speed['fit_seconds']} s / {speed['passes']} passes)",
                     "note": f"4 C x {what}; {mem:.0f} GiB per rank"
                              f"{' (does not fit one 80 GB GPU)' if mem > 80 else ''}; assumed F "
                              f"{H100['F'] / 1e12:.0f} TFLOP/s TF32, B {H100['B'] / 1e12:.2f} TB/s, NCCL busbw "
                              f"{H100['busbw'] / 1e9:.0f} GB/s + {H100['latency'] * 1e6:.0f} us; grid passes "
                              f"assumed equal to the CIFAR-10-size grid's"})
    upsert(args.out, rows, key=KEY)
    for r in rows:
        print(r["device"], r["ranks"], r["rows_per_rank"], r["columns"], r["pass_seconds"], r["grid_seconds"])


if __name__ == "__main__":
    main()
