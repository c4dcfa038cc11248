"""Load time and peak RSS of a full-size Downsampled ImageNet split, in both released forms.

Writes a synthetic split of the real size in the real formats (ten ``train_data_batch_N``
batches of random uint8 pixels and labels 1..1000: ``Imagenet32_train_npz/*.npz`` and the
pickled ``Imagenet32_train/*``, protocol 3), then loads each form with
``dcgan_features.data.registry.load`` in a child process and records its wall time and its peak RSS
(the child's high-water RSS, ``VmHWM``, right after loading, before it checks any pixel) beside the RSS it had before loading (the
interpreter with torch imported). Each form is loaded twice: first with its files evicted
from the page cache (``posix_fadvise(DONTNEED)`` on these files only: "cold", read from
disk), then again ("warm"). The child also checks the first and last batch pixel-exact.
Rows go to ``results/imagenet_load.csv`` through provenance.upsert (a rerun replaces its own rows).

    nice -n 10 python benchmarks/imagenet_load.py --size 32 --work-dir /tmp/in32_bench
    nice -n 10 python benchmarks/imagenet_load.py --size 64 --n 200000 --work-dir /tmp/in64_bench

The synthetic files are deleted afterwards unless ``--keep``; writing them needs 2x the
dataset's size on disk (3.9 GB per form for imagenet32's train split).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcgan_features.data import downsampled_imagenet as dsi  # noqa: E402

from provenance import provenance, upsert  # noqa: E402  (benchmarks/provenance.py)

# everything that makes two rows different measurements: a rerun replaces only its own rows
KEY = ("dataset", "split", "n_images", "form", "cache", "device")
GIB = 1 << 30


def batch(i: int, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch i of the synthetic split: seeded, so the child can regenerate any batch to compare."""
    rng = np.random.default_rng(1000 + i)
    return rng.integers(0, 256, (n, 3 * size * size), dtype=np.uint8), rng.integers(1, 1001, n)


def batch_sizes(n: int, split: str) -> list[int]:
    parts = dsi.TRAIN_BATCHES if split == "train" else 1
    return [len(a) for a in np.array_split(np.arange(n), parts)]


def write(work: Path, size: int, split: str, n: int) -> None:
    """Both forms, one batch in memory at a time."""
    for form in dsi.FORMS:
        (work / dsi.release_folders(size, split, form)[0]).mkdir(parents=True, exist_ok=True)
    for i, (name, m) in enumerate(zip(dsi.batch_names(split, "pickle"), batch_sizes(n, split))):
        data, labels = batch(i, m, size)
        mean = data.mean(0)  # the released files carry it; the loader ignores it
        np.savez(work / dsi.release_folders(size, split, "npz")[0] / f"{name}.npz", data=data, labels=labels, mean=mean)
        with open(work / dsi.release_folders(size, split, "pickle")[0] / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels.tolist(), "mean": mean}, f, protocol=3)
        print(f"{time.strftime('%H:%M:%S')} wrote batch {i + 1} ({m} images)", file=sys.stderr, flush=True)


def evict(folder: Path) -> None:
    """Drop these files (only these) from the page cache, so the next read comes from disk."""
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(args) -> None:
    """Load the split in this process; print one JSON line for the parent.

    Peak RSS is the kernel's high-water mark of this process image (``VmHWM``, the counter
    behind ``ru_maxrss``). ``ru_maxrss`` itself is also recorded, but Linux carries it across
    exec from the parent at fork, so it can read high when the parent was bigger than the load.
    """
    import resource

    from dcgan_features.data.registry import load

    before = _status_kib("VmRSS") * 1024
    t0 = time.perf_counter()
    ds = load(f"imagenet{args.size}", args.split, data_dir=args.data_dir)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") * 1024  # before the check below allocates anything
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sizes = batch_sizes(len(ds), args.split)
    ok = True
    for i in {0, len(sizes) - 1}:  # first and last batch, pixel-exact and 0-based
        start = sum(sizes[:i])
        data, labels = batch(i, sizes[i], args.size)
        ok &= bool(np.array_equal(ds.images[start:start + sizes[i]].numpy().reshape(sizes[i], -1), data))
        ok &= bool(np.array_equal(ds.labels[start:start + sizes[i]].numpy(), labels - 1))
        del data, labels
    print(json.dumps({"seconds": seconds, "before": before, "peak": peak, "maxrss": maxrss, "n": len(ds), "nbytes": ds.images.nbytes, "ok": ok}))


def measure(args, form: str, cache: str) -> dict:
    """One load in a fresh child process: its wall time and peak RSS (the kernel's ru_maxrss)."""
    folder = args.work_dir / f"form_{form}"  # the child sees only one form: the loader prefers npz
    if cache == "cold":
        evict(folder / dsi.release_folders(args.size, args.split, form)[0])
    cmd = [sys.executable, __file__, "--child", "--size", str(args.size), "--split", args.split,
           "--data-dir", str(folder)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, env=env)
    if proc.returncode != 0:
        return {"status": f"failed: {proc.stderr.decode().strip().splitlines()[-1] if proc.stderr else proc.returncode}"}
    r = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    peak = r["peak"]
    return {"status": "ok" if r["ok"] else "PIXELS DIFFER", "n_images": r["n"], "load_seconds": round(r["seconds"], 2),
            "peak_rss_gib": round(peak / GIB, 3), "ru_maxrss_gib": round(r["maxrss"] / GIB, 3),
            "rss_before_load_gib": round(r["before"] / GIB, 3),
            "dataset_uint8_gib": round(r["nbytes"] / GIB, 3),
            "peak_minus_before_over_dataset": round((peak - r["before"]) / r["nbytes"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, choices=dsi.SIZES, default=32)
    ap.add_argument("--split", choices=tuple(dsi.SPLIT_SIZES), default="train")
    ap.add_argument("--n", type=int, default=None, help="images in the split [default: the real size]")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/imagenet_load_bench"))
    ap.add_argument("--forms", default="npz,pickle")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic files")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "imagenet_load.csv")
    ap.add_argument("--note", "--notes", dest="note", default="")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    n = args.n or dsi.SPLIT_SIZES[args.split]
    raw = args.work_dir / "raw"
    if not (raw / dsi.release_folders(args.size, args.split, "npz")[0]).is_dir():
        write(raw, args.size, args.split, n)
    rows = []
    try:
        for form in args.forms.split(","):
            folder = args.work_dir / f"form_{form}"
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / dsi.release_folders(args.size, args.split, form)[0]
            if not link.exists():
                link.symlink_to(raw / dsi.release_folders(args.size, args.split, form)[0])
            on_disk = sum(p.stat().st_size for p in link.iterdir()) / GIB
            for cache in ("cold", "warm"):
                prov = provenance(device="cpu", note=args.note)  # the load at this measurement's start
                r = measure(args, form, cache)
                row = {"dataset": f"imagenet{args.size}", "split": args.split, "n_images": n, "form": form,
                       "cache": cache, "on_disk_gib": round(on_disk, 3), **r, **prov}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    upsert(args.out, rows, key=KEY)


if __name__ == "__main__":
    main()
