"""Probe speed and memory: our torch solver against scikit-learn on the same features and C grid.

Every (backend, probe) fit of the whole C grid runs in its own subprocess under an
address-space limit (RLIMIT_AS), so a fit that needs more memory than the limit fails with
MemoryError instead of pushing other jobs into the OOM killer; its peak RSS is that child's
``ru_maxrss`` (``os.wait4``). Rows go to ``results/probe_speed.csv`` through provenance.upsert,
one per fit (a rerun of the same settings on the same machine replaces its own rows).

    python benchmarks/probe_speed.py --features /work/bench/fmnist_dcgan32w32_random_small.h5 \\
        --C 1e-4,1e-3,1e-2,1e-1 --case small
    python benchmarks/probe_speed.py --features /work/bench/fmnist_imagenet32_random.h5 \\
        --C 1e-4,1e-3,1e-2,1e-1 --case cifar10-sized --backends torch,sklearn --mem-limit-gb 12
    # on a GPU machine (both probes, whole grid, 50000 x 28672):
    python benchmarks/probe_speed.py --features F.h5 --device cuda --backends torch --case cifar10-sized
    # torchrun: time per pass and the all-reduce against the number of ranks (results/probe_dist.csv)
    nice python benchmarks/probe_speed.py --distributed --ranks 1,2 --features F_big.h5 --threads 1 --max-cg 8

``--distributed`` runs the torch solver under ``torchrun`` once per rank count, each rank
holding its share of the rows resident (read from the file, not cached whole), for a bounded
number of passes (``--max-newton`` Newton steps, at most ``--max-cg`` CG passes each): a full
C grid takes over a thousand passes. It records the time per pass between the first and the
last Newton step (CG passes, gradient passes and the solver's work between them), the time
before the first step (share loaded, preconditioner's two Gram passes, first gradient), and
the time of one all-reduce of the Hessian-vector product's size, then extrapolates the grid.
``--make-features PATH`` first writes a CIFAR-10-sized file of class-shifted Gaussian
features (the pass time does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance, upsert  # noqa: E402  (benchmarks/provenance.py)

# everything that makes two rows different measurements: a rerun replaces only its own rows
KEY = ("case", "n_train", "n_test", "dim", "probe", "backend", "C_grid", "threads", "device")
DIST_KEY = ("kind", "case", "device", "ranks", "rows_per_rank", "dim", "probe", "columns")


def machine(device: str) -> dict:
    """provenance() of a row measured now on ``device`` (auto/cpu/cuda): the load before the work."""
    from dcgan_features.core.devices import resolve_device

    return provenance(device=resolve_device(device).type)


# ------------------------------------------------------------------------- worker


def worker(args) -> dict:
    """One fit of the whole grid, in this (limited) process; returns what the parent records."""
    import numpy as np

    from dcgan_features.probes import fit_sklearn, fit_torch
    from dcgan_features.probes.rows import ArrayRows, open_split
    from dcgan_features.extract.store import FeatureFile

    Cs = [float(c) for c in args.C.split(",")]
    with FeatureFile(args.features) as ff:
        if args.backend == "torch":
            train = open_split(ff, "train", args.device)  # float16 resident when it fits, else streamed
            test = open_split(ff, "test", args.device)
            if args.n_train < train.n_rows:
                train = train.subset(np.arange(args.n_train))
            t0 = time.perf_counter()
            fit = fit_torch(args.probe, train, Cs, n_classes=10, device=args.device,
                            log=lambda m: print(f"{time.strftime('%H:%M:%S')} {m}", file=sys.stderr, flush=True))
            seconds = time.perf_counter() - t0
        else:
            X = ff.read("train", 0, args.n_train, dtype=np.float32)  # what scikit-learn is handed
            y = ff.labels("train")[:args.n_train]
            test = ArrayRows(ff.read("test", 0, None, dtype=np.float32), ff.labels("test"), split="test")
            t0 = time.perf_counter()
            fit = fit_sklearn(args.probe, ArrayRows(X, y), Cs, n_classes=10, check_memory=False,
                              max_iter=args.sk_max_iter)
            seconds = time.perf_counter() - t0
        acc = fit.accuracy(test, args.device if args.backend == "torch" else "cpu")
    return {"status": "ok", "fit_seconds": round(seconds, 2), "passes": fit.passes,
            "test_acc_per_C": ";".join(f"{100 * a:.2f}" for a in acc), "best_test_acc": f"{100 * acc.max():.2f}",
            "converged": bool(fit.converged.all())}


def run_child(args, backend: str, probe: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *(["--threads", str(args.threads)] if args.threads else []),
           "--features", args.features, "--C", args.C, "--device",
           args.device, "--n-train", str(args.n_train), "--backend", backend, "--probe", probe,
           *(["--sk-max-iter", str(args.sk_max_iter)] if args.sk_max_iter else [])]
    limit = int(args.mem_limit_gb * 2**30)

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    import tempfile

    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        if args.log:
            ferr = open(args.log, "a+")
            ferr.seek(0, 2)
            start = ferr.tell()
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, text=True,
                                preexec_fn=limit_memory if args.device == "cpu" else None)  # CUDA maps huge VA
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        fout.seek(0)
        ferr.seek(start if args.log else 0)
        out, err = fout.read(), ferr.read()
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    res = {"peak_rss_gib": f"{usage.ru_maxrss / 2**20:.2f}"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code == 0 and lines:
        res.update(json.loads(lines[-1]))
    elif code < 0 and "MemoryError" not in err:  # stopped from outside (time budget): say how far it got
        last = (err.strip().splitlines() or ["no progress line"])[-1][:160]
        res["status"] = f"incomplete: killed by signal {-code} after {wall:.0f} s; last progress: {last}"
    else:
        why = "MemoryError" if any(m in err for m in ("MemoryError", "Unable to allocate", "bad_alloc")) \
            else (err.strip().splitlines() or [f"exit {code}"])[-1][:200]
        res["status"] = f"failed ({why}) under RLIMIT_AS {args.mem_limit_gb:g} GiB after {wall:.0f} s"
    return res


# --------------------------------------------------------------------- distributed



def make_features(path: str, n_train: int = 50000, n_test: int = 10000, dim: int = 28672, seed: int = 0) -> None:
    """A feature file of the CIFAR-10 size: per class a random mean, plus unit Gaussian noise, float16."""
    import numpy as np

    from dcgan_features.extract.writer import FeatureWriter
    from dcgan_features.extract.store import FileMeta

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.5, size=(10, dim)).astype(np.float32)
    labels = {s: rng.integers(0, 10, n) for s, n in (("train", n_train), ("test", n_test))}
    meta = FileMeta("synthetic", "gaussian", 0, ("x",), (dim,), 1, "none", "0" * 64)
    with FeatureWriter(path, meta, {s: (y, np.arange(len(y))) for s, y in labels.items()}) as w:
        for split, y in labels.items():
            for lo in range(0, len(y), 1000):
                yy = y[lo:lo + 1000]
                x = rng.standard_normal((len(yy), dim), dtype=np.float32) + means[yy]
                w.write(split, lo, x.astype(np.float16))
                w.commit(split)
            w.complete(split)


def dist_worker(args) -> dict:
    """One rank: the solver for a bounded number of passes; rank 0 returns the timings."""
    import numpy as np
    import torch

    from dcgan_features.core.devices import init_distributed, resolve_device
    from dcgan_features.core.distributed import all_sum
    from dcgan_features.probes.newton import SolverConfig, fit_torch
    from dcgan_features.probes.rows import FileRows
    from dcgan_features.extract.store import FeatureFile

    ctx = init_distributed(args.device)
    dev = resolve_device(args.device)
    Cs = [float(c) for c in args.C.split(",")]
    stamps = []

    def log(msg: str) -> None:
        stamps.append((time.perf_counter(), int(msg.rsplit("passes ", 1)[1])))

    with FeatureFile(args.features) as ff:
        src = FileRows(ff, "train")  # each rank reads its own share only
        if args.n_train < src.n_rows:
            src = src.subset(np.arange(args.n_train))
        t0 = time.perf_counter()
        fit_torch(args.probe, src, Cs, n_classes=10, device=dev, log=log,
                  config=SolverConfig(max_newton=args.max_newton, max_cg=args.max_cg))
    (t1, p1), (t2, p2) = stamps[0], stamps[-1]
    cols = len(Cs) * (10 if args.probe in ("svm", "logreg") else 1)
    buf = torch.ones((src.dim + 1) * cols, device=dev)
    all_sum(ctx, buf)  # warm-up
    ta = time.perf_counter()
    for _ in range(10):
        all_sum(ctx, buf)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    ar = (time.perf_counter() - ta) / 10 if ctx.enabled else 0.0
    return {"pass_seconds": round((t2 - t1) / max(p2 - p1, 1), 4), "setup_seconds": round(t1 - t0, 2),
            "passes_timed": p2 - p1, "allreduce_seconds": round(ar, 5), "columns": cols, "rank": ctx.rank}


def run_distributed(args) -> None:
    from dcgan_features.extract.store import FeatureFile

    if args.make_features and not Path(args.features).exists():
        make_features(args.features)
    with FeatureFile(args.features) as ff:
        n_all, dim = ff.n_rows("train"), ff.dim
    n = min(args.n_train or n_all, n_all)
    out = Path(args.dist_out)
    for world in [int(w) for w in args.ranks.split(",")]:
        prov = {**machine(args.device), "note": args.note}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
               __file__, "--dist-worker", "--features", args.features, "--C", args.C, "--device", args.device,
               "--n-train", str(n), "--probe", args.probes.split(",")[0], "--max-newton", str(args.max_newton),
               "--max-cg", str(args.max_cg), *(["--threads", str(args.threads)] if args.threads else [])]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(
            Path(__file__).resolve().parents[1])})
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode or not lines:
            raise SystemExit(f"torchrun with {world} ranks failed: {p.stderr.strip().splitlines()[-1:]}")
        res = json.loads(lines[-1])
        row = {"case": args.case, "ranks": world, "rows_total": n, "rows_per_rank": -(-n // world), "dim": dim,
               "probe": args.probes.split(",")[0], "columns": res["columns"],
               "allreduce_mb": f"{(dim + 1) * res['columns'] * 4 / 2**20:.2f}",
               "pass_seconds": res["pass_seconds"], "allreduce_seconds": res["allreduce_seconds"],
               "setup_seconds": res["setup_seconds"], "passes_timed": res["passes_timed"],
               "grid_passes": args.grid_passes, "grid_seconds": round(res["setup_seconds"] + args.grid_passes
                                                                      * res["pass_seconds"]),
               "source": "this run", **prov}
        print(json.dumps(row), flush=True)
        upsert(out, [row], key=DIST_KEY)

# ------------------------------------------------------------------ protocol cases

# The few-label and all-labels columns end to end (run_protocol), torch against `--backend sklearn`
# on the same synthetic class-structured features in this process. ``same``: the protocol at a
# size scikit-learn finishes on shared cores (both backends; its ratio and per-draw accuracy are
# measured); ``full`` (torch alone): the protocol's own size, its ratio predicted from
# scikit-learn's measured seconds per fit times the full run's fit count.
PROTOCOL_CASES = {
    # the SVHN authors' protocol: 7 C x 10 fresh selection draws + 100 measured draws = 170 fits of 1000 x 7168
    "svhn-authors": {"protocol": "svhn", "dim": 7168, "n_train": 14000, "n_test": 2000, "full": {},
                     "same": {"select_draws": 1, "draws": 3}},
    # CIFAR-10's 400 per class: 4000 x 28672, the wide grid, 10 draws (C from their mean validation accuracy)
    # (both on 1 draw; with --sk-subset scikit-learn fits only 2 of the grid's 5 C, no widening, for
    # loaded cores where its whole grid takes hours: the speed-up is then a lower bound)
    "cifar10-400-per-class": {"protocol": "cifar10", "dim": 28672, "n_train": 15000, "n_test": 2000, "separation": 0.04,
                              "full": {"full": False}, "same": {"full": False, "draws": 1},
                              "sk_subset": {"full": False, "draws": 1, "c_grid": (1e-4, 1e-3), "c_extend": 0}},
    # the all-labels column: C chosen on validation over pool fits, refit on every labelled row (primal)
    "all-labels": {"protocol": "cifar10", "dim": 3584, "n_train": 8000, "n_test": 2000,
                   "full": {"labels_per_class": None, "val_size": 2000},
                   "same": {"labels_per_class": None, "val_size": 2000}},
}


def synthetic_features(n_train: int, n_test: int, dim: int, seed: int = 0, separation: float = 0.02):
    """Class-structured features like a conv net's: a shared positive mean per column (most of
    the energy in one direction), a random mean per class (``separation`` per column) and unit noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    common = np.abs(rng.normal(size=dim)).astype(np.float32)
    means = rng.normal(scale=separation, size=(10, dim)).astype(np.float32) + common
    out = []
    for n in (n_train, n_test):
        y = rng.integers(0, 10, n)
        X = rng.standard_normal((n, dim), dtype=np.float32)
        X += means[y]
        out += [X, y]
    return out


def _run(case: dict, which: str, feats, probe: str, backend: str, count_flops: bool = False) -> dict:
    """One protocol run: its record, seconds, the number of fits and (``count_flops``) the flops."""
    import dataclasses

    from torch.utils.flop_counter import FlopCounterMode

    from dcgan_features.probes import estimators
    from dcgan_features.probes.protocols import PROTOCOLS, run_protocol

    cfg = dataclasses.replace(PROTOCOLS[case["protocol"]], **case[which])
    fits, inner = [0], estimators.fit

    def counted(*a, **k):
        fits[0] += 1
        return inner(*a, **k)

    estimators.fit = counted
    counter = FlopCounterMode(display=False) if count_flops else None
    try:
        t0 = time.perf_counter()
        if counter is not None:
            with counter:
                (rec,) = run_protocol(case["protocol"], feats, (probe,), cfg, device="cpu", backend=backend)
        else:
            (rec,) = run_protocol(case["protocol"], feats, (probe,), cfg, device="cpu", backend=backend)
        seconds = time.perf_counter() - t0
    finally:
        estimators.fit = inner
    return {"rec": rec, "seconds": seconds, "fits": fits[0],
            "flops": counter.get_total_flops() if counter is not None else None, "cfg": cfg}


def run_protocol_case(args) -> None:
    """Rows of ``--protocol-case`` for each probe: torch and sklearn on ``same``, torch on ``full``."""
    import numpy as np
    import torch

    from benchmarks.provenance import provenance, upsert
    from benchmarks.yardstick import Yardstick
    from dcgan_features.probes.protocols import from_arrays

    torch.set_num_threads(args.threads or 1)
    case = PROTOCOL_CASES[args.protocol_case]
    Xtr, ytr, Xte, yte = synthetic_features(case["n_train"], case["n_test"], case["dim"],
                                            separation=case.get("separation", 0.02))
    feats = from_arrays(Xtr, ytr, Xte, yte, name="synthetic")
    note = "; ".join(filter(None, [args.notes, f"2 cores shared by 8 helpers (niced), torch threads "
                                   f"{args.threads or 1}, scikit-learn single-threaded (OMP_NUM_THREADS=1)"]))
    for probe in args.probes.split(","):
        stick = Yardstick.start(args.threads or 1)
        t_same = _run(case, "same", feats, probe, "torch")
        counted = _run(case, "same", feats, probe, "torch", count_flops=True)  # flops only: the counter slows it
        subset = args.sk_subset and "sk_subset" in case
        sk = _run(case, "sk_subset" if subset else "same", feats, probe, "sklearn")
        full = _run(case, "full", feats, probe, "torch") if args.full and case["full"] != case["same"] else None
        cols = stick.columns(counted["flops"], t_same["seconds"])
        per_fit_sk = sk["seconds"] / sk["fits"]
        a, b = np.array(t_same["rec"].get("per_draw") or [t_same["rec"]["mean"]]), \
            np.array(sk["rec"].get("per_draw") or [sk["rec"]["mean"]])
        base = {"case": args.protocol_case, "probe": probe, "dim": case["dim"], "n_train": case["n_train"],
                "n_test": case["n_test"]}
        rows = []
        for backend, which, r in (("torch", "same", t_same), ("sklearn", "same", sk), ("torch", "full", full)):
            if r is None:
                continue
            rec = r["rec"]
            row = {**base, "C_grid": ";".join(f"{c:g}" for c in r["cfg"].c_grid), "backend": backend, "draws": which, "fits": r["fits"], "status": "ok",
                   "fit_seconds": round(r["seconds"], 1), "solver_form": rec.get("solver_form", ""),
                   "n_labels": rec["n_labels"], "C": rec["C"], "mean": round(rec["mean"], 2),
                   "per_draw": ";".join(f"{v:.2f}" for v in rec.get("per_draw") or []),
                   "converged": rec["converged"]}
            if backend == "torch" and which == "same":
                basis = "measured" if not subset else \
                    f"measured, lower bound: sklearn on C {sk['cfg'].c_grid} only, torch on the whole grid"
                row.update(cols, speedup_vs_sklearn=round(sk["seconds"] / r["seconds"], 2), speedup_basis=basis,
                           max_abs_diff_per_draw=round(float(np.abs(a - b).max()), 3), flops=f"{counted['flops']:.4g}",
                           max_abs_diff_val_per_C=_val_diff(t_same["rec"], sk["rec"]))
            if which == "full":
                row.update(speedup_vs_sklearn=round(per_fit_sk * r["fits"] / r["seconds"], 2),
                           speedup_basis=f"predicted: sklearn's {per_fit_sk:.2f} s per fit (measured, same run) "
                                         f"x {r['fits']} fits")
            row.update(provenance("measured", "cpu", note))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if full is None and case["full"] != case["same"]:  # the protocol's own size, predicted per fit
            n_fits = _fit_count(case)
            row = {**base, "C_grid": ";".join(f"{c:g}" for c in t_same["cfg"].c_grid), "backend": "torch",
                   "draws": "full", "fits": n_fits, "status": "predicted",
                   "fit_seconds": round(t_same["seconds"] / t_same["fits"] * n_fits, 1),
                   "speedup_vs_sklearn": round(per_fit_sk / (t_same["seconds"] / t_same["fits"]), 2),
                   "speedup_basis": f"predicted: seconds per fit of both backends measured on draws=same x {n_fits}"
                                    + ("; lower bound (sklearn's fits on part of the grid)" if subset else "")}
            row.update(provenance("predicted", "cpu", note))
            rows.append(row)
        upsert(args.out, rows, key=("case", "probe", "backend", "draws"))


def _val_diff(a: dict, b: dict) -> float | None:
    """The largest difference of two records' validation scores at the same C (the same draws and
    rows: a comparison that holds when the two backends choose different Cs on a flat curve)."""
    common = set(a.get("val_scores") or {}) & set(b.get("val_scores") or {})
    return round(max(abs(a["val_scores"][c] - b["val_scores"][c]) for c in common), 3) if common else None


def _fit_count(case: dict) -> int:
    """Fits of the protocol at its own size without grid widening (``--full`` measures them)."""
    import dataclasses

    from dcgan_features.probes.protocols import PROTOCOLS

    cfg = dataclasses.replace(PROTOCOLS[case["protocol"]], **case["full"])
    if cfg.selection == "fresh":
        return len(cfg.c_grid) * cfg.select_draws + cfg.draws
    return (cfg.labels_per_class is not None) * cfg.draws + cfg.full * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", default=None, help="feature file (all modes but --protocol-case)")
    ap.add_argument("--sk-subset", action="store_true",
                    help="with --protocol-case cifar10-400-per-class: scikit-learn on 2 of the 5 C only (a lower bound)")
    ap.add_argument("--full", action="store_true",
                    help="with --protocol-case: also run torch at the protocol's own size [default: predicted "
                         "from the seconds per fit]")
    ap.add_argument("--protocol-case", choices=sorted(PROTOCOL_CASES), default=None,
                    help="a protocol column end to end on synthetic features, torch against sklearn (see "
                         "PROTOCOL_CASES); rows upserted into --out with the yardstick columns")
    ap.add_argument("--C", default="1e-4,1e-3,1e-2,1e-1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-train", type=int, default=None, help="first N train rows [default: all]")
    ap.add_argument("--probes", default="svm,logreg")
    ap.add_argument("--backends", default="torch,sklearn")
    ap.add_argument("--case", default="")
    ap.add_argument("--mem-limit-gb", type=float, default=12.0)
    ap.add_argument("--note", "--notes", dest="note", default="")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads in the torch workers [default: torch's own]; 1 avoids OpenMP spinning "
                         "when other jobs share the cores (liblinear is single-threaded anyway)")
    ap.add_argument("--sk-max-iter", type=int, default=None,
                    help="scikit-learn's max_iter [default: its own, 1000 for LinearSVC, 100 for "
                         "LogisticRegression, where lbfgs stops before its tol on these features]")
    ap.add_argument("--log", default=None, help="append the workers' progress (stderr) to this file")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "probe_speed.csv"))
    ap.add_argument("--distributed", action="store_true",
                    help="time per pass and all-reduce under torchrun for each --ranks (see the module doc)")
    ap.add_argument("--ranks", default="1,2", help="with --distributed: rank counts to run")
    ap.add_argument("--max-newton", type=int, default=2, help="with --distributed: Newton steps timed")
    ap.add_argument("--max-cg", type=int, default=8, help="with --distributed: CG passes per Newton step at most")
    ap.add_argument("--grid-passes", type=int, default=1333,
                    help="with --distributed: passes of a whole C grid, to extrapolate the grid time [default: "
                         "the 50000 x 28672 L2-SVM grid's, results/probe_speed.csv]")
    ap.add_argument("--make-features", action="store_true",
                    help="with --distributed: write --features first if missing (CIFAR-10 size, synthetic)")
    ap.add_argument("--dist-out", default=str(Path(__file__).resolve().parents[1] / "results" / "probe_dist.csv"))
    ap.add_argument("--dist-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.threads and (args.dist_worker or args.distributed):
        import torch

        torch.set_num_threads(args.threads)
    if args.protocol_case:
        return run_protocol_case(args)
    if not args.features:
        ap.error("--features is required (except with --protocol-case)")
    if args.dist_worker:
        res = dist_worker(args)
        if res.pop("rank") == 0:
            print(json.dumps(res), flush=True)
        return
    if args.distributed:
        return run_distributed(args)
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(worker(args)), flush=True)
        return

    from dcgan_features.extract.store import FeatureFile

    with FeatureFile(args.features) as ff:
        n_all, n_test, dim = ff.n_rows("train"), ff.n_rows("test"), ff.dim
    args.n_train = min(args.n_train or n_all, n_all)
    matrix = args.n_train * dim * 4 / 2**30
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for probe in args.probes.split(","):
        for backend in args.backends.split(","):
            prov = machine(args.device)
            res = run_child(args, backend, probe)
            row = {"case": args.case, "n_train": args.n_train, "n_test": n_test, "dim": dim, "probe": probe,
                   "backend": backend, "C_grid": args.C, "matrix_f32_gib": f"{matrix:.2f}",
                   "threads": (args.threads or "default") if backend == "torch" else "", **res, **prov,
                   "note": "; ".join(filter(None, [args.note, f"torch threads {args.threads or 'default'}"
                                                    if backend == "torch" else
                                                    f"sklearn max_iter {args.sk_max_iter}" if args.sk_max_iter
                                                    else "sklearn defaults"]))}
            row["rss_over_matrix"] = f"{float(res['peak_rss_gib']) / matrix:.2f}"
            print(json.dumps(row), flush=True)
            upsert(out, [row], key=KEY)


if __name__ == "__main__":
    main()
