"""Extraction speed: dataset -> HDF5 end to end, against a bare D forward over the same images.

One process times, in this order: the bare forward (uint8 batch -> [-1, 1] on the device ->
channels-last ``D(x)``, the same model in the same memory format as ``extract`` runs it), ``extract`` to HDF5 for each dtype (hooks, pooling, the writer thread, the
final fsync and rename included; the dataset is already in memory for both), then the
bare forward again; the ratio uses the mean of the two bare runs, so load drift on a
shared machine shows up as a gap between them (both are in the CSV). On the CPU the
machine's matmul rate is measured before and after as well (``yardstick.py``, same
threads): the forward's flops (torch's counter) per second of the bare forward and of the
extraction are given as fractions of it. Rows are appended to
``results/extract_speed.csv``. Targets (DESIGN section 7): CPU ratio <= 1.3; GPU
(``imagenet32`` width 128, H100) >= 20000 img/s to HDF5.

    python benchmarks/extract_speed.py                                  # CPU, imagenet32 w32, Fashion-MNIST
    python benchmarks/extract_speed.py --dataset digits --n 1297 --width 16
    python benchmarks/extract_speed.py --device cuda --width 128 --n 50000 --batch-size 1024 --dataset synthetic-big
    python benchmarks/extract_speed.py --model torchvision:resnet18 --layer all --grid 1   # any feature source

With ``--model SPEC`` the bare forward is the source's whole module on the same input
(normalised as the source feeds it); the extraction hooks ``--layer`` at ``--grid``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.provenance import provenance, upsert  # noqa: E402
from benchmarks.yardstick import Yardstick  # noqa: E402
from dcgan_features.core import devices  # noqa: E402
from dcgan_features.data.registry import ImageSet, load, make_synthetic  # noqa: E402
from dcgan_features.extract.run import ExtractConfig, extract, random_init_model  # noqa: E402
from dcgan_features.core.devices import resolve_device  # noqa: E402
from dcgan_features.extract.hooks import to_model_input  # noqa: E402

# everything that makes two rows different measurements: a rerun replaces only its own rows
KEY = ("arch", "width", "layers", "grid", "dim", "dataset", "n_images", "batch_size", "bn", "dtype", "threads",
       "device")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def d_forward(D: torch.nn.Module, device: torch.device):
    """D(x) of a uint8 batch, scaled on the device and channels-last, as extract runs it."""
    return lambda x: D(to_model_input(x, device).contiguous(memory_format=torch.channels_last))


@torch.no_grad()
def bare_forward(forward, images: torch.Tensor, batch: int, device: torch.device) -> float:
    """Seconds for ``forward`` over every image, batch by batch."""
    if device.type == "cuda":
        images = images.to(device)
    sync(device)
    t0 = time.perf_counter()
    for lo in range(0, images.shape[0], batch):
        forward(images[lo:lo + batch].to(device))
    sync(device)
    return time.perf_counter() - t0


def forward_gflop(forward, images: torch.Tensor, device: torch.device) -> float:
    """GFLOP per image of ``forward`` (convolutions and matmuls, torch's flop counter, one small batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        forward(images.to(device))
    return counter.get_total_flops() / images.shape[0] / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="imagenet32")
    ap.add_argument("--model", default=None, metavar="SPEC",
                    help="a feature source (extract --model) instead of a random-init --arch")
    ap.add_argument("--layer", default="all", help="with --model: layers to hook")
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--dataset", default="fashion-mnist",
                    help="a dataset name, or synthetic-big (generated, --n images, no files needed)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=2000, help="images (the first N of the train split)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dtypes", default="float16,float32")
    ap.add_argument("--bn", default="running", choices=["running", "batch", "recompute"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--tmp-dir", default=None, help="where the HDF5 files go (deleted after)")
    ap.add_argument("--note", default="", help="free text for the CSV (e.g. 'machine shared with other jobs')")
    ap.add_argument("--out", default="results/extract_speed.csv")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.model:
        from dcgan_features.extract.sources import from_spec
        from dcgan_features.extract.sources.generic import normalize

        model = from_spec(args.model)
        net = model.module.to(device).eval()
        forward = lambda x: net(normalize(x, model.normalize))  # noqa: E731
        size, args.arch, args.width = model.image_size, args.model, ""
    else:
        model = random_init_model(args.arch, args.width, seed=0)
        # channels-last for the bare forward too: the fastest plain forward, as extract runs it
        forward = d_forward(model.D.to(device=device, memory_format=torch.channels_last).eval(), device)
        size = model.image_size
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.dataset == "synthetic-big":
        x, y = make_synthetic(args.n, size=size)
        ds = ImageSet(torch.from_numpy(x), torch.from_numpy(y), "synthetic", "train")
        name = "synthetic"
    else:
        ds = load(args.dataset, "train", data_dir=args.data_dir, image_size=size)
        name = args.dataset
    n = min(args.n, len(ds))
    data = {"train": ImageSet(ds.images[:n].contiguous(), ds.labels[:n], name, "train")}

    bare_forward(forward, data["train"].images[:2 * args.batch_size], args.batch_size, device)  # warm up
    gflop_per_image = forward_gflop(forward, data["train"].images[:8], device)
    prov = provenance(device=device.type, note=args.note)  # the load before the work
    stick = Yardstick.start(args.threads) if device.type == "cpu" else None  # the matmul rate, same threads
    before = bare_forward(forward, data["train"].images, args.batch_size, device)
    runs = []
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        for dtype in args.dtypes.split(","):
            out = Path(tmp) / f"f_{dtype}.h5"
            cfg = ExtractConfig(dataset=name, splits=("train",), bn=args.bn, dtype=dtype, batch_size=args.batch_size,
                                device=str(device), layers=args.layer, grid=args.grid)
            res = extract(model, out, cfg, data=data)
            runs.append((dtype, res["seconds"], out.stat().st_size))
            out.unlink()
    after = bare_forward(forward, data["train"].images, args.batch_size, device)
    bare = (before + after) / 2
    sticks = stick.columns(gflop_per_image * 1e9 * n, bare) if stick is not None else {}

    dim = model.plan(args.layer, args.grid, args.bn).dim
    rows = []
    for dtype, seconds, size_bytes in runs:
        rows.append({
            "threads": torch.get_num_threads() if device.type == "cpu" else "",
            "arch": args.arch, "width": args.width, "layers": args.layer, "grid": args.grid, "dim": dim, "dataset": name, "n_images": n,
            "batch_size": args.batch_size, "bn": args.bn, "dtype": dtype,
            "bare_forward_s_before": f"{before:.3f}", "bare_forward_s_after": f"{after:.3f}",
            "bare_img_per_s": f"{n / bare:.0f}", "extract_s": f"{seconds:.3f}",
            "extract_img_per_s": f"{n / seconds:.0f}", "ratio_extract_to_bare": f"{seconds / bare:.3f}",
            "mb_written_per_s": f"{size_bytes / seconds / 1e6:.1f}", "file_bytes": size_bytes,
            "gflop_per_image": f"{gflop_per_image:.4g}", **prov,
        })
        if sticks:  # the forward's flops at the bare and the extraction rate, as fractions of the matmul rate
            ext = gflop_per_image * n / seconds
            rows[-1].update(bare_gflops=sticks["gflops"], bare_fraction=sticks["fraction"],
                            extract_gflops=round(ext, 2), extract_fraction=round(ext / sticks["yardstick_gflops"], 3),
                            **{k: v for k, v in sticks.items() if k.startswith("yardstick")})
    out = Path(args.out)
    upsert(out, rows, key=KEY)
    for r in rows:
        print(f"{r['dtype']}: extract {r['extract_img_per_s']} img/s ({r['extract_s']} s), bare forward "
              f"{r['bare_img_per_s']} img/s (before {before:.3f} s, after {after:.3f} s), ratio "
              f"{r['ratio_extract_to_bare']}, {r['mb_written_per_s']} MB/s, file {r['file_bytes']} B")
    print(f"appended {len(rows)} row(s) to {out}")


if __name__ == "__main__":
    main()
