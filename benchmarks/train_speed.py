"""Training throughput: an ablation of the step's speed changes, and the plain loop, in one process.

Every variant trains the same architecture at the same width on the same random uint8 images
(seeded; throughput does not depend on content) through the library's own run object
(``train._Run``: the exact code ``dcgan-features train`` runs), timed step by step:

* ``full``: everything on (``train``'s defaults, plus ``--cuda-graph`` on CUDA): one D pass over cat(real, fake) with
  per-half BatchNorm, data pre-normalised on the device, and on CUDA the CUDA-graph step;
* one row per change turned off: ``no-cuda-graph`` (CUDA only), ``no-joint-d``,
  ``no-prenormalize``; ``all-off`` turns all three off at once; ``compile`` adds
  ``torch.compile`` (CUDA by default; ``--compile-variants`` elsewhere);
* ``ckpt-sync`` / ``ckpt-async``: ``full`` with a checkpoint every ``--ckpt-every`` timed
  steps, written synchronously or by the background writer;
* ``plain``: the pytorch/examples dcgan loop (DataLoader of PIL images, ``ToTensor`` +
  ``Normalize`` per item, fp32, ``.item()`` every step), in the same process;
* a batch sweep of ``full`` (``--sweep``, default 128,256,512,1024 on CUDA).

Columns: ``img_per_s`` (timed steps x batch over the wall time between two CUDA events, or
perf_counter on a CPU), ``host_ms_per_step`` (Python's time issuing one step, without
waiting for the device), ``device_ms_per_step`` (on CUDA: the summed kernel time of
``--profile-steps`` steps under torch.profiler; on a CPU the wall time: the CPU is the
device), ``tflops`` (achieved: FLOPs of one step, counted layer by layer by
``torch.utils.flop_counter`` on the eager step, over the wall time per step), and
``ceiling_img_per_s`` (``--ceiling``, CUDA: the sum over the step's conv/linear calls of each
one's own forward + backward time at its shapes in bf16, replayed from a CUDA graph: what
cuDNN/cuBLAS themselves reach on these layers, elementwise work excluded). On a CPU,
``fraction`` is the achieved rate over the machine's float32 matmul rate measured before and
after the variants with the same threads (``yardstick.py``): comparable across loaded runs.

Rows go to ``results/train_ablation.csv`` with the device, date and command. The GPU run
(``benchmarks/gpu_suite.sh`` step 1; targets: DESIGN section 7)::

    python benchmarks/train_speed.py --device cuda --arch imagenet32 --width 128 --batch 128 --ceiling

CPU, tiny (what runs here)::

    python benchmarks/train_speed.py --device cpu --arch imagenet32 --width 8 --batch 32 --steps 10 --warmup 2 --sweep 16,64
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_features.nets.architectures import get_arch, sample_z  # noqa: E402
from benchmarks.provenance import provenance, upsert  # noqa: E402
from benchmarks.yardstick import Yardstick, matmul_rate  # noqa: E402
from dcgan_features.core.devices import DistContext, resolve_device  # noqa: E402
from dcgan_features.train.loop import TrainConfig, _Run, _use_cuda_graph  # noqa: E402
from dcgan_features.train.state import RunFolder  # noqa: E402

# everything that makes two rows different measurements: a rerun replaces only its own rows
KEY = ("arch", "width", "batch", "variant", "steps", "warmup", "n_images", "threads", "torch", "device")

FULL = {"cuda_graph": True, "joint_d": True, "prenormalize": True, "compile": False, "async_ckpt": True}
ABLATION = {
    "full": {},
    "no-cuda-graph": {"cuda_graph": False},
    "no-joint-d": {"joint_d": False},
    "no-prenormalize": {"prenormalize": False},
    "all-off": {"cuda_graph": False, "joint_d": False, "prenormalize": False},
    "compile": {"compile": True},
    "ckpt-sync": {"async_ckpt": False},
    "ckpt-async": {"async_ckpt": True},
}


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_run(args, images: torch.Tensor, batch: int, fields: dict, out: str) -> _Run:
    """The training run ``dcgan-features train`` would build for these settings (no data loading)."""
    spec = get_arch(args.arch)
    cfg = TrainConfig(dataset="random-uint8", arch=args.arch, width=args.width, nz=spec.nz, out=out,
                      batch_size=batch, device=args.device, amp=args.amp, epochs=10**6, progress=False, **fields)
    device = resolve_device(cfg.device)
    folder = RunFolder(out)
    folder.prepare()
    folder.create()
    return _Run(cfg, spec, device, DistContext(), folder, {}, None, images, _use_cuda_graph(cfg, device, DistContext()))


def batches(run: _Run, seed: int = 0):
    """Index slices of seeded epochs, forever (the loop's own order would need its generator)."""
    g = torch.Generator().manual_seed(seed)
    b = run.local_batch
    while True:
        perm = torch.randperm(run.n_images, generator=g).to(run.device)
        for s in range(0, run.n_images - b + 1, b):
            yield perm[s:s + b]


def time_steps(run: _Run, steps: int, warmup: int, ckpt_every: int = 0) -> dict:
    """img/s over ``steps`` timed steps after ``warmup``, and the host's issue time per step."""
    device, it = run.device, batches(run)
    for _ in range(warmup):
        run.take_step(next(it))
    run.writer.wait()
    sync(device)
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device.type == "cuda" else None
    host = 0.0
    t0 = time.perf_counter()
    if events:
        events[0].record()
    for i in range(steps):
        index = next(it)  # drawing the order is not part of the step
        h0 = time.perf_counter()
        run.take_step(index)
        if ckpt_every and (i + 1) % ckpt_every == 0:
            run.step = i + 1
            run._save_checkpoint(epoch_end=False, epoch=0)  # snapshot now; the file maybe in the background
        host += time.perf_counter() - h0
    if events:
        events[1].record()
    sync(device)
    wall = time.perf_counter() - t0
    run.writer.wait()  # a write still in flight is not part of the timed steps
    seconds = events[0].elapsed_time(events[1]) / 1000 if events else wall
    return {"img_per_s": steps * run.local_batch / seconds, "s_per_step": seconds / steps,
            "host_ms_per_step": 1000 * host / steps}


def device_ms_per_step(run: _Run, steps: int) -> float | None:
    """Summed CUDA kernel time of ``steps`` steps (torch.profiler), per step."""
    if run.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    it = batches(run, seed=1)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run.take_step(next(it))
        sync(run.device)
    # kernel events only (a CPU op's row would count its kernels a second time)
    cuda = torch.autograd.DeviceType.CUDA
    total_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == cuda)
    return total_us / 1000 / steps if total_us else None  # None: the profiler saw no kernels


def flops_per_step(args, images: torch.Tensor, batch: int) -> int:
    """FLOPs of one eager step (joint D pass, G step through a frozen D), counted op by op."""
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as out:
        run = make_run(args, images, batch, {**FULL, "cuda_graph": False}, out)
        it = batches(run)
        run.take_step(next(it))  # Adam's lazy state first
        with FlopCounterMode(display=False) as counter:
            run.take_step(next(it))
        return int(counter.get_total_flops())


def layer_ceiling_ms(args, images: torch.Tensor, batch: int) -> float | None:
    """Sum over the step's conv/linear calls of their forward + backward alone (CUDA graph replay)."""
    if resolve_device(args.device).type != "cuda":
        return None
    calls = []

    def record(module, inputs, output):
        x = inputs[0]
        calls.append((module, tuple(x.shape), x.requires_grad, module.weight.requires_grad))

    with tempfile.TemporaryDirectory() as out:
        run = make_run(args, images, batch, {**FULL, "cuda_graph": False}, out)
        layers = [m for m in (*run.G.modules(), *run.D.modules())
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
        hooks = [m.register_forward_hook(record) for m in layers]
        it = batches(run)
        run.take_step(next(it))
        calls.clear()
        run.take_step(next(it))
        for h in hooks:
            h.remove()
        return sum(_time_layer(*c, amp=run.amp) for c in calls)


def _time_layer(module, shape, input_grad: bool, weight_grad: bool, amp: bool, reps: int = 20) -> float:
    device = module.weight.device
    dtype = torch.bfloat16 if amp else torch.float32
    layer = copy.deepcopy(module).to(dtype)  # own parameters: the run's stay untouched
    layer.weight.requires_grad_(weight_grad)
    fmt = {"memory_format": torch.channels_last} if len(shape) == 4 else {}
    x = torch.randn(shape, device=device, dtype=dtype).contiguous(**fmt).requires_grad_(input_grad)
    grad_out = torch.randn_like(layer(x))

    def once():
        y = layer(x)
        if input_grad or weight_grad:
            y.backward(grad_out)

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            once()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            once()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize(device)
    return start.elapsed_time(end) / reps


# ------------------------------------------------------------------- the plain loop


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


def time_plain(args, images: torch.Tensor, batch: int) -> dict:
    """The pytorch/examples dcgan loop (fp32, DataLoader + PIL transforms, .item() each step)."""
    import torchvision.transforms as T

    device = resolve_device(args.device)
    spec = get_arch(args.arch)
    dataset = PILImages(images, T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=args.workers,
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
                sync(device)
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
    sync(device)
    seconds = time.perf_counter() - t0
    # every step ends in .item(): the host waits for the device, so host time is the wall time
    return {"img_per_s": args.steps * batch / seconds, "s_per_step": seconds / args.steps,
            "host_ms_per_step": 1000 * seconds / args.steps}


# ------------------------------------------------------------------------ driver


def variants(args, device: torch.device) -> list[tuple[str, int, dict]]:
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in ABLATION and v != "plain"]
    if unknown:
        sys.exit(f"error: unknown variant(s) {', '.join(unknown)}; choose from plain, {', '.join(ABLATION)}")
    full = {**FULL, "cuda_graph": device.type == "cuda"}  # the graph is asked for on CUDA only (off by default)
    out = []
    for name in names:
        if name == "no-cuda-graph" and device.type != "cuda":
            continue  # the same as full off CUDA
        if name == "compile" and device.type != "cuda" and not args.compile_variants:
            continue
        out.append((name, args.batch, {} if name == "plain" else {**full, **ABLATION[name]}))
    for b in (int(x) for x in args.sweep.split(",") if x):
        if b != args.batch:
            out.append(("full", b, dict(full)))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="imagenet32")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (cuDNN autotune, compile)")
    p.add_argument("--n-images", type=int, default=None, help="[default: 50000 on CUDA, 2048 on CPU]")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (CUDA)")
    p.add_argument("--variants", default="plain," + ",".join(ABLATION))
    p.add_argument("--sweep", default=None, help="more batch sizes for 'full' [default: 128,256,512,1024 on CUDA]")
    p.add_argument("--ckpt-every", type=int, default=50, help="ckpt-* variants: timed steps between checkpoints")
    p.add_argument("--profile-steps", type=int, default=10, help="CUDA: steps profiled for device ms/step")
    p.add_argument("--ceiling", action="store_true", help="CUDA: time every conv/linear call of the step alone")
    p.add_argument("--compile-variants", action="store_true", help="run the compile variant off CUDA too")
    p.add_argument("--workers", type=int, default=2, help="plain loop's DataLoader workers (examples' default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--note", default="", help="free text for the CSV, e.g. 'CPU shared with other jobs'")
    p.add_argument("--csv", default=str(REPO / "results" / "train_ablation.csv"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device = device.type
    if args.sweep is None:
        args.sweep = "128,256,512,1024" if device.type == "cuda" else ""
    todo = variants(args, device)
    n = args.n_images or (50000 if device.type == "cuda" else 2048)
    images = random_images(n, get_arch(args.arch).image_size)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/train_speed.py", *(argv or sys.argv[1:])])
    base = {"arch": args.arch, "width": args.width, "steps": args.steps, "warmup": args.warmup, "n_images": n,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            **provenance(device=device.type, note=args.note, command=command)}  # the load before the work
    flops: dict[int, int] = {}
    ceiling: dict[int, float | None] = {}
    rows = []
    stick = Yardstick.start(torch.get_num_threads()) if device.type == "cpu" else None  # the matmul rate, same threads
    for name, batch, fields in todo:
        if batch not in flops:
            flops[batch] = flops_per_step(args, images, batch)
        if args.ceiling and batch == args.batch and batch not in ceiling:
            ms = layer_ceiling_ms(args, images, batch)
            ceiling[batch] = batch / (ms / 1000) if ms else None
        row = {**base, "batch": batch, "variant": name, **measure(args, images, batch, name, fields)}
        row["gflop_per_step"] = round(flops[batch] / 1e9, 3)
        row["flops_per_s"] = flops[batch] / row.pop("s_per_step")
        row["tflops"] = round(row["flops_per_s"] / 1e12, 4)
        row["ceiling_img_per_s"] = round(ceiling[batch], 1) if ceiling.get(batch) else None
        rows.append(row)
        print(f"{name:>16} batch {batch:>5}: {row['img_per_s']:>10.1f} img/s  host {row['host_ms_per_step']:.2f} ms"
              f"  device {row['device_ms_per_step']} ms  {row['tflops']} TFLOP/s", flush=True)
    plain = next((r["img_per_s"] for r in rows if r["variant"] == "plain"), None)
    if stick is not None:  # each row's achieved rate as a fraction of the mean of the start and end matmul rates
        end = matmul_rate(stick.threads, stick.size)
        for r in rows:
            cols = stick.columns(r["flops_per_s"], 1.0, end=end)
            r.update(fraction=cols["fraction"], **{k: v for k, v in cols.items() if k.startswith("yardstick")})
    for r in rows:
        r.pop("flops_per_s")
        r["vs_plain"] = round(r["img_per_s"] / plain, 2) if plain and r["batch"] == args.batch else None
        r["img_per_s"] = round(r["img_per_s"], 1)
        r["host_ms_per_step"] = round(r["host_ms_per_step"], 3)
    path = Path(args.csv)
    upsert(path, rows, key=KEY)
    print(f"{len(rows)} rows -> {path}")


def measure(args, images: torch.Tensor, batch: int, name: str, fields: dict) -> dict:
    """One variant's timings and the settings it ran with."""
    if name == "plain":
        r = time_plain(args, images, batch)
        return {**r, "device_ms_per_step": None, "amp": False, "compile": False, "cuda_graph": False,
                "joint_d": False, "prenormalize": False}
    ckpt_every = args.ckpt_every if name.startswith("ckpt-") else 0
    with tempfile.TemporaryDirectory() as out:
        run = make_run(args, images, batch, fields, out)
        r = time_steps(run, args.steps, args.warmup, ckpt_every)
        dev_ms = device_ms_per_step(run, args.profile_steps)
        if run.device.type != "cuda":
            dev_ms = 1000 * r["s_per_step"]  # on a CPU the CPU is the device
        r["device_ms_per_step"] = round(dev_ms, 3) if dev_ms is not None else None
        settings = dataclasses.asdict(run.cfg)
        return {**r, "amp": run.amp, "compile": settings["compile"], "cuda_graph": run.graph is not None,
                "joint_d": settings["joint_d"], "prenormalize": run.data.prenormalized,
                "ckpt_every": ckpt_every or None, "async_ckpt": settings["async_ckpt"] if ckpt_every else None}


if __name__ == "__main__":
    main()
