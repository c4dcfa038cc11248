"""Training throughput: our loop against a plain pytorch/examples-style loop, in one process.

Both loops train the same architecture at the same width and batch on the same device
and the same images (random uint8, seeded: throughput does not depend on content):

* ``ours``: ``dcgan_features.train.train`` itself: the images live on the device as uint8,
  batches are gathered by index and scaled there, channels_last, bf16 autocast on CUDA
  (``--amp``), optional ``--compile``. Its img/s is read from the run's metrics.jsonl,
  over the steps after ``--warmup`` (checkpoint and sample writes fall outside the windows).
* ``plain``: the pytorch/examples dcgan loop: a torchvision-style Dataset of PIL images,
  ``ToTensor`` + ``Normalize`` per item, ``DataLoader(shuffle, num_workers, drop_last)``,
  fp32, default memory format, ``.item()`` on the losses every step as that script does.

Appends one row per loop to ``--csv`` (default results/train_speed.csv), with the device,
date and command. The GPU target (DESIGN section 7) is one command on an H100::

    python benchmarks/train_speed.py --arch imagenet32 --width 128 --batch 128 --device cuda --steps 300 --warmup 20

CPU here (small width; the cores may be shared, see the ``note`` column)::

    python benchmarks/train_speed.py --arch dcgan32 --width 16 --batch 64 --device cpu --steps 20
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_features.architectures import get_arch, sample_z  # noqa: E402
from dcgan_features.atomic import write_csv_atomic  # noqa: E402
from dcgan_features.devices import device_name, resolve_device  # noqa: E402
from dcgan_features.train import TrainConfig, train  # noqa: E402

COLUMNS = ["date", "device", "arch", "width", "batch", "amp", "compile", "loop", "img_per_s", "speedup",
           "steps", "warmup", "n_images", "workers", "threads", "torch", "note", "command"]


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def time_ours(args, images: torch.Tensor) -> float:
    """img/s of train() over the steps after the warmup, from its own metrics windows."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(dataset="random-uint8", arch=args.arch, width=args.width, out=out, epochs=10**6,
                          batch_size=args.batch, device=args.device, amp=args.amp, compile=args.compile,
                          max_steps=args.warmup + args.steps, log_every=args.warmup, ckpt_every=10**9,
                          keep_every=0, sample_every=10**6, progress=False)
        train(cfg, images=images)
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r["step"] > args.warmup]
    steps = [r["step"] - prev["step"] for prev, r in zip(rows, rows[1:]) if r["step"] > args.warmup]
    seconds = sum(s * args.batch / r["img_per_s"] for s, r in zip(steps, timed))
    return sum(steps) * args.batch / seconds


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image, then the transforms."""

    def __init__(self, images: torch.Tensor, transform):
        from PIL import Image

        self.items = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.transform(self.items[i]), 0


def time_plain(args, images: torch.Tensor) -> float:
    """img/s of the pytorch/examples dcgan loop (fp32, DataLoader + PIL transforms)."""
    import torchvision.transforms as T

    device = resolve_device(args.device)
    spec = get_arch(args.arch)
    dataset = PILImages(images, T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         drop_last=True, pin_memory=device.type == "cuda")
    netG, netD = spec.build(args.width, seed=0)
    netG.to(device)
    netD.to(device)
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = torch.nn.BCEWithLogitsLoss()
    done, t0 = 0, None
    while done < args.warmup + args.steps:
        for real_cpu, _ in loader:
            if done == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            # (1) update D: maximize log D(x) + log(1 - D(G(z)))
            netD.zero_grad()
            real = real_cpu.to(device)
            b = real.size(0)
            label = torch.full((b,), 1.0, device=device)
            output = netD(real)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = torch.sigmoid(output).mean().item()
            fake = netG(sample_z(spec, b, device=device))
            label.fill_(0.0)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            optD.step()
            # (2) update G: maximize log D(G(z))
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            optG.step()
            _ = ((errD_real + errD_fake).item(), errG.item(), D_x)  # the example prints these every step
            done += 1
            if done == args.warmup + args.steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="dcgan32")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cudnn autotune, compile)")
    p.add_argument("--n-images", type=int, default=None, help="[default: 50000 on CUDA, 4096 on CPU]")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="ours: bf16 on CUDA")
    p.add_argument("--compile", action="store_true", help="ours: torch.compile G and D")
    p.add_argument("--workers", type=int, default=2, help="plain loop's DataLoader workers (examples' default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--loops", default="ours,plain")
    p.add_argument("--note", default="", help="free text for the CSV, e.g. 'CPU shared with other jobs'")
    p.add_argument("--csv", default=str(REPO / "results" / "train_speed.csv"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device = device.type
    n = args.n_images or (50000 if device.type == "cuda" else 4096)
    images = random_images(n, get_arch(args.arch).image_size)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both loops (pytorch/examples sets it too; ours does anyway)

    results = {}
    for loop in args.loops.split(","):
        results[loop] = (time_ours if loop == "ours" else time_plain)(args, images)
        print(f"{loop}: {results[loop]:.1f} img/s", flush=True)
    base = results.get("plain")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/train_speed.py", *(argv or sys.argv[1:])])
    now = datetime.datetime.now().isoformat(timespec="seconds")
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(path, COLUMNS, [
        {"date": now, "device": device_name(device), "arch": args.arch, "width": args.width,
         "batch": args.batch, "amp": bool(args.amp and device.type == "cuda") if loop == "ours" else False,
         "compile": args.compile if loop == "ours" else False, "loop": loop,
         "img_per_s": round(ips, 1), "speedup": round(ips / base, 2) if base else "",
         "steps": args.steps, "warmup": args.warmup, "n_images": n,
         "workers": args.workers if loop == "plain" else 0, "threads": torch.get_num_threads(),
         "torch": torch.__version__, "note": args.note, "command": command}
        for loop, ips in results.items()], append=True)
    if base and "ours" in results:
        print(f"speedup ours/plain: {results['ours'] / base:.2f}x -> {path}")


if __name__ == "__main__":
    main()
