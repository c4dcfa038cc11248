"""README's folder example, end to end: the first 1500 Fashion-MNIST training images written as
``my_images/<class>/*.png``, ``extract --model pixels --dataset folder`` (the generic protocol's
seeded 20% test split), ``probe --features mine.h5 --labels-per-class 20``; the probe's table is
copied to ``results/folder_example.csv`` with this run's provenance columns (benchmarks/provenance.py).

    python benchmarks/folder_example.py --work-dir /tmp/ex
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from provenance import PROVENANCE, provenance, read_rows  # noqa: E402


def main() -> None:
    from PIL import Image

    from dcgan_features.core.atomic import write_csv_atomic
    from dcgan_features.data.registry import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default="/tmp/ex")
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    prov = provenance(device="cpu", note=f"the first {args.n} Fashion-MNIST training images as a PNG folder")
    work = Path(args.work_dir)
    ds = load("fashion-mnist", "train")
    for i in range(args.n):
        d = work / "my_images" / ds.classes[int(ds.labels[i])].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0].numpy()).save(d / f"{i:05d}.png")
    cli = [sys.executable, "-m", "dcgan_features.cli"]
    for cmd in (["extract", "--model", "pixels", "--image-size", "32", "--dataset", "folder", "--data-dir",
                 "my_images", "--out", "mine.h5", "--device", "cpu"],
                ["probe", "--features", "mine.h5", "--device", "cpu", "--labels-per-class", "20", "--out", "probes"]):
        subprocess.run(cli + cmd, cwd=work, check=True)
    out = REPO / "results" / "folder_example.csv"
    rows = [{**r, **{k: v for k, v in prov.items() if k != "device"}} for r in read_rows(work / "probes" / "probes.csv")]
    columns = list(rows[0]) + [c for c in PROVENANCE if c not in rows[0]]  # the records' own order, device included
    write_csv_atomic(out, columns, rows)  # the table is this run's alone


if __name__ == "__main__":
    main()
