"""The look-inside demonstrations of results/look/: visualize, neighbours and forget on the
authors' SVHN model and on a Fashion-MNIST model trained here, one results row per picture.

Each stage runs the CLI command that is written into its row (``command``), then reads the
command's own CSV for the row's numbers, and upserts ``results/look/look.csv`` by ``case``. The
command's own CSVs (``<out>.csv``, ``<out>_summary.csv``) get the same provenance columns, so
every CSV in results/ is in the one schema (``--stamp-only`` stamps them again from look.csv's
rows without rerunning anything).

    python benchmarks/look_results.py --fm-checkpoint runs/fm/checkpoints/last.pt            # everything
    python benchmarks/look_results.py --only svhn_forget                                      # one case

The Fashion-MNIST model is ``dcgan-features train --dataset fashion-mnist --arch dcgan32 --width 32
--epochs 2 --device cpu --seed 0 --out runs/fm`` (runs/ is not committed).
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import REPO, provenance, upsert  # noqa: E402

OUT = "results/look"
SVHN = "dcgan_features/pretrained/svhn32_theano.pt"


def cases(fm: str) -> dict[str, tuple[list[str], str, str]]:
    """case -> (CLI arguments, the CSV the row reads, a note)."""
    return {
        "svhn_visualize": (["visualize", SVHN, "--dataset", "digits", "--n-maps", "8", "--top-k", "8",
                            "--out", f"{OUT}/svhn_visualize.png"], f"{OUT}/svhn_visualize.csv",
                           "authors' SVHN D (last block d3) on scikit-learn digits: SVHN itself cannot be downloaded here"),
        "svhn_forget": (["forget", SVHN, "--boxes", f"{OUT}/svhn_boxes.json", "--n", "64", "--seed", "3",
                         "--out", f"{OUT}/svhn_forget.png"], f"{OUT}/svhn_forget_summary.csv",
                        "authors' SVHN G; boxes on the central digit of 16 numbered samples, drawn by eye"),
        "svhn_forget_top8": (["forget", SVHN, "--boxes", f"{OUT}/svhn_boxes.json", "--n", "64", "--seed", "3",
                              "--drop", "8", "--out", f"{OUT}/svhn_forget_top8.png"], f"{OUT}/svhn_forget_top8_summary.csv",
                             "as svhn_forget, only the 8 maps with the largest probe weights dropped"),
        "fm_forget": (["forget", fm, "--boxes", f"{OUT}/fm_boxes.json", "--n", "64", "--seed", "3",
                       "--out", f"{OUT}/fm_forget.png"], f"{OUT}/fm_forget_summary.csv",
                      "Fashion-MNIST dcgan32 trained here; boxes on the shoe of 12 numbered samples, drawn by eye"),
        "fm_visualize": (["visualize", fm, "--dataset", "fashion-mnist", "--n-maps", "8", "--top-k", "8",
                          "--out", f"{OUT}/fm_visualize.png"], f"{OUT}/fm_visualize.csv",
                         "dcgan32 width 32 trained 2 epochs on Fashion-MNIST here (CPU), last block d3, train split"),
        "fm_neighbours": (["neighbours", fm, "--dataset", "fashion-mnist", "--n", "16", "--k", "5",
                           "--reference", "1000", "--out", f"{OUT}/fm_neighbours.png"],
                          f"{OUT}/fm_neighbours_summary.csv",
                          "dcgan32 width 32 trained 2 epochs on Fashion-MNIST here; 60000 training images"),
    }


def row_of(case: str, table: str) -> list[dict]:
    rows = list(csv.DictReader(open(REPO / table)))
    if case.endswith("_visualize"):  # the top response of each model's first map
        firsts = [r for r in rows if r["rank"] == "0" and r["map"] == rows[0]["map"]]
        return [{"case": f"{case}:{r['model'].split()[0]}", "what": f"{r['model']} block {r['block']} map {r['map']} "
                 f"top activation", "value": r["activation"]} for r in firsts]
    if case.endswith("_neighbours"):
        return [{"case": f"{case}:{r['space']}", "what": f"fraction of {r['samples']} samples nearer ({r['space']}) "
                 f"than the median train pair ({r['median_train_pair']})", "value": r["fraction_closer"]} for r in rows]
    (r,) = rows
    return [{"case": f"{case}:{k}", "what": f"{k} ({r['dropped']} of {r['maps']} maps of {r['layer']} dropped)",
             "value": r[k]} for k in ("heldout_accuracy", "box_contrast_before", "box_contrast_after")]


def outputs(cli: list[str]) -> list[Path]:
    """The CSVs a look command writes beside its ``--out`` picture."""
    png = REPO / cli[cli.index("--out") + 1]
    return [p for p in (png.with_suffix(".csv"), png.with_name(png.stem + "_summary.csv"),
                        png.with_name(png.stem + "_distances.csv")) if p.exists()]


def stamp(path: Path, prov: dict) -> None:
    """Give every row of a command's own CSV the provenance of the run that wrote it (atomic)."""
    rows = list(csv.DictReader(open(path, newline="")))
    keep = [c for c in (rows[0] if rows else {}) if c not in prov]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, keep + list(prov))
        w.writeheader()
        w.writerows({**{c: r[c] for c in keep}, **prov} for r in rows)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fm-checkpoint", default="runs/fm/checkpoints/last.pt")
    ap.add_argument("--only", action="append", help="run only these cases")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stamp-only", action="store_true",
                    help="only give the commands' own CSVs the provenance of their look.csv rows")
    args = ap.parse_args()
    if args.stamp_only:
        done = {r["case"].split(":")[0]: r for r in csv.DictReader(open(REPO / OUT / "look.csv", newline=""))}
        for case, (cli, _, _) in cases(args.fm_checkpoint).items():
            if case in done:
                prov = {k: done[case][k] for k in ("kind", "command", "commit", "device", "load", "date", "note")}
                for path in outputs(cli):
                    stamp(path, prov)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for case, (cli, table, note) in cases(args.fm_checkpoint).items():
        if args.only and case not in args.only:
            continue
        cli = [*cli, "--device", args.device]
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "dcgan_features.cli", *cli], cwd=REPO, env=env, check=True)
        secs = time.time() - t0
        prov = provenance(device=args.device, command="dcgan-features " + shlex.join(cli),
                          note=f"{note}; {secs:.0f} s wall, nice 10 on 2 cores shared with other jobs")
        upsert(REPO / OUT / "look.csv", [{**r, "seconds": f"{secs:.0f}", **prov} for r in row_of(case, table)],
               key=("case",))
        for path in outputs(cli):
            stamp(path, prov)
        print(f"{case}: {secs:.0f} s", flush=True)


if __name__ == "__main__":
    main()
