"""Decoding speed of the image-folder reader (``dcgan_features/data/folder.py``): img/s with one
worker process against every core, on a folder of synthetic JPEGs of ImageNet's typical size.

The JPEGs are written once (seeded smooth noise, 500x375, quality 90, ImageNet's median shape)
into ``--work-dir``; each run decodes all of them to ``--size`` (min-resize, center crop) and
keeps the pixels. The two runs must give the same pixels (checked). A row per worker count goes
to ``results/folder_decode.csv`` (key: case, workers).

    python benchmarks/folder_decode.py --n 2000 --size 32 --note "..."
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.provenance import provenance, upsert  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def write_jpegs(folder: Path, n: int, size=(500, 375), classes: int = 10, seed: int = 0) -> list[Path]:
    """``n`` JPEGs under folder/<class>/, smooth seeded noise (so they compress like photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"c{i % classes}" / f"{i:07d}.jpg"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
            Image.fromarray(small).resize(size, Image.BICUBIC).save(p, quality=90)
        paths.append(p)
    return paths


def main() -> None:
    from dcgan_features.data.folder import FolderOptions, decode, worker_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--work-dir", default="/tmp/folder_decode_jpegs")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    files = write_jpegs(Path(args.work_dir), args.n)
    rows, out = [], {}
    for workers in (1, worker_count(0)):
        t0 = time.perf_counter()
        out[workers], _ = decode(files, args.size, FolderOptions(workers=workers))
        s = time.perf_counter() - t0
        rows.append({"case": f"{args.n} jpeg 500x375 -> {args.size}", "workers": workers,
                     "images": args.n, "seconds": round(s, 2), "img_per_s": round(args.n / s, 1),
                     **provenance(note=args.note)})
        print(rows[-1]["workers"], rows[-1]["img_per_s"], "img/s", flush=True)
    a, b = out.values()
    assert np.array_equal(a, b), "1 worker and all cores decoded different pixels"
    if len(rows) == 2:
        rows[1]["speedup_vs_1"] = round(rows[1]["img_per_s"] / rows[0]["img_per_s"], 2)
    upsert(RESULTS / "folder_decode.csv", rows, key=("case", "workers"))


if __name__ == "__main__":
    main()
