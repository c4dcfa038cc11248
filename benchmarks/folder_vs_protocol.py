"""Fashion-MNIST read as an image folder through the generic protocol against the same images
through the ``fashion-mnist`` protocol, with the same validation rule (``--validation stratified``):
the whole dataset, pixel features (28x28, so no resampling: the two files hold the same pixels in
another row order).

Writes all 70000 images as PNGs under ``WORK/fm/train/<class>/`` and ``WORK/fm/test/<class>/``,
extracts ``--model pixels --image-size 28`` from the folder and from the idx files, probes both
(``--probe logreg``, ``--C`` as given, ``--labels-per-class 100``), and writes one row per
(features, column) to ``results/folder_equivalence.csv`` (key: source, protocol, probe).

    python benchmarks/folder_vs_protocol.py --work-dir /tmp/fmfolder --note "..."
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.provenance import provenance, upsert  # noqa: E402


def write_folder(root: Path) -> None:
    from PIL import Image

    from dcgan_features.data.registry import load

    for split in ("train", "test"):
        ds = load("fashion-mnist", split)
        for i in range(len(ds)):
            d = root / split / ds.classes[int(ds.labels[i])].replace("/", "-")
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"{i:05d}.png"
            if not p.exists():
                Image.fromarray(ds.images[i, 0].numpy()).save(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default="/tmp/fmfolder")
    ap.add_argument("--C", default="1e-3,1e-2,1e-1")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    work = Path(args.work_dir)
    write_folder(work / "fm")
    cli = [sys.executable, "-m", "dcgan_features.cli"]
    common = ["--model", "pixels", "--image-size", "28", "--device", "cpu", "--dtype", "float32"]
    probe = ["--probe", "logreg", "--C", args.C, "--device", "cpu", "--labels-per-class", "100", "--out",
             str(work / "probes")]
    for name, extra, popts in (("folder", ["--data-dir", str(work / "fm")], []),
                               ("fashion-mnist", [], ["--validation", "stratified"])):
        out = work / f"{name}.h5"
        subprocess.run(cli + ["extract", *common, "--dataset", name, *extra, "--out", str(out)], check=True)
        subprocess.run(cli + ["probe", "--features", str(out), *probe, *popts], check=True)
    rows = []
    for rec in sorted((work / "probes").glob("*.json")):
        r = json.loads(rec.read_text())
        rows.append({"source": r["features"], "protocol": r["protocol"], "protocol_kind": r["protocol_kind"],
                     "probe": r["probe"], "validation": r["validation"], "val_rows": r["val_rows"],
                     "C": r["C"], "n_labels": r["n_labels"], "mean": round(r["mean"], 3),
                     "ci95": round(r["ci95"], 3), "n_runs": r["n_runs"], **provenance(note=args.note)})
    upsert(REPO / "results" / "folder_equivalence.csv", rows, key=("source", "protocol", "probe"))
    for r in rows:
        print(r["source"], r["protocol"], r["C"], r["mean"], r["ci95"])


if __name__ == "__main__":
    main()
