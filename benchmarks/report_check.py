"""The report checked in headless Chromium at 1280 and 800 px: screenshots under results/report_check/.

Two runs, each rendered by ``reproduce``'s own report code:

* ``digits``: ``dcgan-features quickstart --out runs/report_check_digits`` (the demo; no paper figures);
* ``cifar10``: a tiny CIFAR-10 in its released format (python pickles, 40 images per batch file,
  balanced labels; the real data cannot be downloaded here) probed with a small ``dcgan32``
  trained on digits, ``--val-size 50 --labels-per-class 5 --draws 2``: its columns are not the
  paper's (5 per class, 150 labels), so the paper's figures are listed apart and no gap is shown.

Then ``chromium --headless --screenshot`` of each report at 1280 and 800 px wide. Look at them.

    PYTHONPATH=. python benchmarks/report_check.py [--digits-out runs/demo_time]

``--digits-out`` may name a finished quickstart folder: its stages are reused, the report rewritten.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "report_check"
OUT = REPO / "results" / "report_check"
CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "dcgan_features.cli", *map(str, args)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def tiny_cifar(root: Path, per_file: int = 40) -> None:
    """CIFAR-10's python pickles, as released: bytes keys, a list of labels, uint8 rows of 3072."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(per_file) % 10
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        data[:, :1024] = (labels[:, None] * 25).astype(np.uint8)  # the class in the red channel: learnable
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                         b"filenames": [b"x.png"] * per_file}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": CLASSES, b"num_cases_per_batch": per_file, b"num_vis": 3072}, f, protocol=2)


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", f"--window-size={width},{height}", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--digits-out", default=str(WORK / "digits"), help="the quickstart's --out (reused if finished)")
    args = ap.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    digits = Path(args.digits_out)
    cli("quickstart", "--out", digits)
    tiny_cifar(WORK / "data")
    cli("train", "--dataset", "digits", "--arch", "dcgan32", "--width", "16", "--epochs", "3", "--out", WORK / "d")
    cli("reproduce", "cifar10", "--checkpoint", WORK / "d" / "checkpoints" / "last.pt", "--data-dir", WORK / "data",
        "--val-size", "50", "--labels-per-class", "5", "--draws", "2", "--out", WORK / "cifar10")
    for run, folder, height in (("digits", digits, 3200), ("cifar10", WORK / "cifar10", 2600)):
        for width in (1280, 800):
            screenshot(folder / "report.html", OUT / f"{run}_{width}.png", width, height)
    print(f"wrote {OUT}/{{digits,cifar10}}_{{1280,800}}.png")


if __name__ == "__main__":
    main()
