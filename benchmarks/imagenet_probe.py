"""The 1000-class ImageNet-scale probe on the CPU: time per pass and peak RSS against rows, on a
synthetic feature file with ImageNet 32x32's full train row count (1,281,167) and a reduced d,
then what the full-size probe (d = 28672) takes on 8 GPUs, predicted from that scaling.

The file: ``--dim`` float16 features, per class a random mean plus unit noise, 1000 classes,
train 1,281,167 rows and val 50,000 (the test split of the imagenet32 protocol). Each
measurement runs the torch solver (L2-SVM, one C, 1000 classes) in a fresh child process on the
first ``n`` train rows (``n`` = the full count / 64, / 32, / 16, / 8: the last is one rank's share
of 8), for ``--newton`` Newton steps of at most ``--cg`` CG passes, and reports the seconds per
pass between its first and last Newton step, the setup before them and the child's peak RSS; the
child also measures its own float32 matmul rate (a 2048^3 product), the yardstick that makes a
row comparable across loads. Rows go to ``results/imagenet_probe.csv`` (key: case, rows):

- ``kind=measured``: each ``n``;
- ``kind=predicted``: all 1,281,167 rows in one CPU process (pass work linear in ``n`` in units of
  the machine's own matmul rate, RSS by least squares on the measured rows), and 8 GPUs at d = 28672 (the pass model of
  ``benchmarks/probe_scaling.py``, fitted there to the measured H100 CIFAR-10 grid; its columns
  are C values x 1000 classes; the grid's pass count is assumed equal to the CIFAR-10 grid's).

    python benchmarks/imagenet_probe.py --dim 64 --note "..."
    python benchmarks/imagenet_probe.py --dim 64 --predict-only     # the predicted rows again, from the measured ones
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.provenance import provenance, read_rows, upsert  # noqa: E402

RESULTS = REPO / "results"
N_TRAIN, N_VAL, K = 1_281_167, 50_000, 1000


def make_file(path: Path, dim: int, seed: int = 0) -> None:
    """The synthetic 1000-class file, written in chunks (it is ~N x dim x 2 bytes)."""
    from dcgan_features.extract.store import FileMeta
    from dcgan_features.extract.writer import FeatureWriter

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.5, size=(K, dim)).astype(np.float32)
    labels = {"train": rng.integers(0, K, N_TRAIN), "val": rng.integers(0, K, N_VAL)}
    meta = FileMeta("imagenet32", "gaussian", 0, ("x",), (dim,), 1, "none", "0" * 64)
    with FeatureWriter(path, meta, {s: (y, np.arange(len(y))) for s, y in labels.items()}) as w:
        for split, y in labels.items():
            for lo in range(0, len(y), 65536):
                yy = y[lo:lo + 65536]
                w.write(split, lo, (rng.standard_normal((len(yy), dim), dtype=np.float32) + means[yy]).astype(np.float16))
                w.commit(split)
            w.complete(split)


def child(args) -> None:
    """One measurement, in its own process so its peak RSS is its own."""
    import resource

    import torch

    from dcgan_features.extract.store import FeatureFile
    from dcgan_features.probes.newton import SolverConfig, fit_torch
    from dcgan_features.probes.rows import FileRows

    a = torch.randn(2048, 2048)
    a @ a
    t = time.perf_counter()
    for _ in range(3):
        a @ a
    gflops = 3 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9
    from dcgan_features.probes.precond import Subspace

    stamps, in_precond = [], []  # the preconditioner's set-up per Newton step, timed apart from the passes
    build = Subspace.preconditioner

    def timed(self, weight):
        t = time.perf_counter()
        out = build(self, weight)
        in_precond.append((t, time.perf_counter()))
        return out

    Subspace.preconditioner = timed
    with FeatureFile(args.features) as ff:
        src = FileRows(ff, "train").subset(np.arange(args.rows))
        t0 = time.perf_counter()
        fit_torch("svm", src, [1e-3], n_classes=K, device="cpu",
                  log=lambda m: stamps.append((time.perf_counter(), int(m.rsplit("passes ", 1)[1]))),
                  config=SolverConfig(max_newton=args.newton, max_cg=args.cg))
    (t1, p1), (t2, p2) = stamps[0], stamps[-1]
    pre = sum(b - a for a, b in in_precond if a >= t1 and b <= t2)
    print(json.dumps({"pass_seconds": (t2 - t1 - pre) / max(p2 - p1, 1), "passes_timed": p2 - p1,
                      "precond_seconds_per_newton": pre / max(len(stamps) - 1, 1),
                      "setup_seconds": t1 - t0, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 2**20, "matmul_gflops": gflops}))


def gpu_prediction(n_total: int, dim: int, cs: int) -> dict:
    """8 x H100 at full size, from probe_scaling's pass model and its measured H100 constant."""
    import csv

    from benchmarks.probe_scaling import H100, pass_seconds

    speed = next(r for r in csv.DictReader(open(RESULTS / "probe_speed.csv"))
                 if r["device"].startswith("NVIDIA H100") and r["case"] == "cifar10-sized" and r["probe"] == "svm")
    h_pass = float(speed["fit_seconds"]) / int(speed["passes"])
    k = h_pass / max(4 * 50000 * dim * 40 / H100["F"], 2 * 50000 * dim * 4 / H100["B"])
    n = -(-n_total // 8)
    t, ar = pass_seconds(n, cs * K, 8, k, **H100, dim=dim)
    mem = (n * dim * 4 + 6 * n * cs * K * 4) / 2**30
    return {"pass_seconds": round(t, 4), "allreduce_seconds": round(ar, 5), "grid_passes": 1333,
            "grid_seconds": round(1333 * t), "peak_rss_gib": round(mem, 1),
            "source": f"probe_scaling.py's model with k={k:.2f} from the H100 svm row of probe_speed.csv "
                      f"({speed['fit_seconds']} s / {speed['passes']} passes, 50000 x 28672, 4 C x 10 classes)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--features", default="/tmp/imagenet_probe_synthetic.h5")
    ap.add_argument("--fractions", default="64,32,16,8", help="measure on N_TRAIN / each of these")
    ap.add_argument("--newton", type=int, default=2)
    ap.add_argument("--cg", type=int, default=4)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--note", default="")
    ap.add_argument("--predict-only", action="store_true",
                    help="only the predicted rows, from the measured rows already in the CSV at --dim")
    args = ap.parse_args()
    if args.child:
        return child(args)
    path = Path(args.features)
    if not path.exists() and not args.predict_only:
        make_file(path, args.dim)
    measured = [] if not args.predict_only else [
        {**r, "rows": int(r["rows"]), "pass_seconds": float(r["pass_seconds"]), "peak_rss_gib": float(r["peak_rss_gib"]),
         "pass_x_gflops": float(r["pass_x_gflops"]), "matmul_gflops": float(r["matmul_gflops"])}
        for r in read_rows(RESULTS / "imagenet_probe.csv")
        if r["kind"] == "measured" and r["dim"] == str(args.dim)]
    for f in [] if args.predict_only else [int(x) for x in args.fractions.split(",")]:
        n = -(-N_TRAIN // f)
        p = subprocess.run([sys.executable, __file__, "--child", "--features", str(path), "--rows", str(n),
                            "--newton", str(args.newton), "--cg", str(args.cg)], capture_output=True, text=True,
                           timeout=args.timeout, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2",
                                                      "PATH": "/usr/bin:/bin"})
        if p.returncode:
            raise SystemExit(f"rows {n}: {p.stderr.strip().splitlines()[-1:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        row = {"case": f"imagenet32-sized 1000 classes, d={args.dim}", "rows": n, "dim": args.dim, "classes": K,
               "probe": "svm", "columns": K, "pass_seconds": round(r["pass_seconds"], 3),
               "passes_timed": r["passes_timed"], "setup_seconds": round(r["setup_seconds"], 1),
               "precond_seconds_per_newton": round(r["precond_seconds_per_newton"], 1),
               "peak_rss_gib": round(r["peak_rss_gib"], 2), "matmul_gflops": round(r["matmul_gflops"], 1),
               "pass_x_gflops": round(r["pass_seconds"] * r["matmul_gflops"], 1),
               **provenance(note=f"first {n} train rows (1/{f}); " + args.note)}
        measured.append(row)
        print(json.dumps({k: row[k] for k in ("rows", "pass_seconds", "peak_rss_gib", "matmul_gflops")}), flush=True)
        upsert(RESULTS / "imagenet_probe.csv", [row], key=("case", "rows"))
    ns = np.array([r["rows"] for r in measured], float)
    ar_, br = np.polyfit(ns, [r["peak_rss_gib"] for r in measured], 1)
    # a pass's work is linear in rows; the wall time of one on shared cores is not, so the per-row
    # cost is taken in units of the process's own matmul rate (pass_x_gflops / rows), median over rows
    per_row = float(np.median([float(r["pass_x_gflops"]) / r["rows"] for r in measured]))
    rate = float(np.median([float(r["matmul_gflops"]) for r in measured]))
    full = {"case": f"imagenet32-sized 1000 classes, d={args.dim}", "rows": N_TRAIN, "dim": args.dim, "classes": K,
            "probe": "svm", "columns": K, "pass_seconds": round(per_row * N_TRAIN / rate, 1),
            "pass_x_gflops": round(per_row * N_TRAIN, 1), "peak_rss_gib": round(ar_ * N_TRAIN + br, 1),
            **provenance("predicted", note=f"one CPU process on all rows: a pass costs {per_row * 1e3:.1f} GFLOP-"
                                           f"equivalents (of this machine's matmul) per 1000 rows (median of the "
                                           f"{len(measured)} measured rows), at their median rate {rate:.1f} GFLOP/s; "
                                           "peak RSS linear in rows (least squares)")}
    cs = 5
    gpu = {"case": "imagenet32 full size on 8 GPUs (model)", "rows": N_TRAIN, "dim": 28672, "classes": K,
           "probe": "svm", "columns": cs * K, **gpu_prediction(N_TRAIN, 28672, cs),
           **provenance("predicted", note=f"8 x H100 80GB, torchrun, {cs} C x 1000 classes at once, per rank "
                                          "160146 rows; peak_rss_gib is the GPU memory per rank (X share in "
                                          "float32 + 6 row-space tensors); assumed H100 rates as probe_scaling.py; "
                                          "grid passes assumed = the CIFAR-10 grid's 1333. Optimistic: k was fitted "
                                          "at 40 columns, and the subspace preconditioner's set-up (N r^2 per "
                                          "column, not in this model) took 12 to 36 passes' time per Newton step "
                                          "in the CPU rows at 1000 classes")}
    upsert(RESULTS / "imagenet_probe.csv", [full, gpu], key=("case", "rows"))
    print(json.dumps(full), json.dumps(gpu), sep="\n")


if __name__ == "__main__":
    main()
