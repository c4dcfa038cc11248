"""The host overhead of one eager training step, counted: aten ops dispatched, not a timing.

On a CPU every variant of the step is eager, so the number of aten ops one steady-state step
dispatches is the deterministic measure of the per-layer and per-parameter host work the step
does (tests/train/test_train_step.py holds a budget on it). One row per architecture and D
pass (``joint``: real and fake in one D pass, as the loop runs it; ``separate``: the paper's two
D passes), written to ``results/op_count.csv`` through provenance.upsert::

    python benchmarks/op_count.py
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_features.nets.architectures import get_arch, sample_z  # noqa: E402
from dcgan_features.train.step import TrainStep  # noqa: E402
from provenance import provenance, upsert  # noqa: E402  (benchmarks/provenance.py)

KEY = ("arch", "width", "batch", "d_pass", "torch", "device")


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count(arch: str, width: int, batch: int, joint: bool) -> collections.Counter:
    """Ops of the second step (Adam makes its state lazily in the first) on the CPU."""
    spec = get_arch(arch)
    G, D = spec.build(width, seed=0)
    G.to(memory_format=torch.channels_last)
    D.to(memory_format=torch.channels_last)
    step = TrainStep(G, D, lr=2e-4, beta1=0.5, batch=batch, device=torch.device("cpu"), joint=joint)
    g = torch.Generator().manual_seed(0)
    size = spec.image_size
    data = [((torch.rand(batch, 3, size, size, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last),
             sample_z(spec, batch, generator=g)) for _ in range(2)]
    step(*data[0])
    with OpCounter() as c:
        step(*data[1])
    return c.counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="imagenet32,dcgan32")
    ap.add_argument("--width", type=int, default=4, help="the count does not depend on it")
    ap.add_argument("--batch", type=int, default=8, help="nor on this")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "op_count.csv")
    args = ap.parse_args(argv)
    prov = provenance(device="cpu", note=args.note)
    rows = []
    for arch in args.archs.split(","):
        for joint in (True, False):
            c = count(arch, args.width, args.batch, joint)
            rows.append({"arch": arch, "width": args.width, "batch": args.batch,
                         "d_pass": "joint" if joint else "separate", "aten_ops": sum(c.values()),
                         "convolutions": c["aten.convolution"], "torch": torch.__version__, **prov})
            print(f"{arch} {rows[-1]['d_pass']}: {rows[-1]['aten_ops']} aten ops")
    upsert(args.out, rows, key=KEY)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
