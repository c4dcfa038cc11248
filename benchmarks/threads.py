"""CPU thread count vs speed, for training steps and the probes' passes over the features.

The measurement behind ``dcgan_features/core/threads.py``: for each case, the same work at 1
thread and at torch's default thread count (all the cores this process may use), in one
process, interleaved (1, default, 1, default) so that a change of load on shared cores hits
both. Columns:

* ``stage``: ``train`` (the library's own loop, ``train(TrainConfig(...), images=...)``, on
  random uint8 images: throughput does not depend on content; ``img_per_s`` is the loop's own
  logged rate) or ``probe`` (one solver pass: ``X @ W`` and ``X.T @ G`` over a float32
  ``rows x dim`` matrix, 10 classes; ``passes_per_s``);
* ``size``: what the policy compares with its threshold: the parameters of G and D for
  ``train`` (and ``extract``), rows x dim for ``probe``;
* ``threads``: 1 or the default count; ``speedup_vs_default``: the 1-thread rate over the
  default's, on the 1-thread rows.

CPU (what runs here)::

    nice -n 10 python benchmarks/threads.py --note "cores shared with 7 other jobs"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.provenance import provenance, upsert  # noqa: E402

TRAIN_CASES = (("dcgan32", 16), ("dcgan32", 32), ("dcgan32", 64), ("imagenet32", 32))
PROBE_CASES = ((1297, 3584), (5000, 3584), (20000, 3584))


def train_size(arch: str, width: int) -> int:
    """Parameters of G and D together: the size the thread policy compares for training."""
    from dcgan_features.core.threads import model_size
    from dcgan_features.nets.architectures import build

    return model_size(*build(arch, width))


def train_rate(arch: str, width: int, steps: int, threads: int) -> float:
    from dcgan_features.train.loop import TrainConfig, train

    torch.set_num_threads(threads)
    images = torch.randint(0, 256, (64 * steps, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        res = train(TrainConfig(dataset="random", arch=arch, width=width, epochs=1, batch_size=64, out=f"{tmp}/r",
                                device="cpu", log_every=max(steps // 3, 1), ckpt_every=10**6, sample_every=10**6,
                                keep_every=0, async_ckpt=False, progress=False, threads=threads),
                    images=images)
    return res.img_per_s


def probe_rate(rows: int, dim: int, threads: int, passes: int = 5) -> float:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    X, W = torch.randn(rows, dim, generator=g), torch.randn(dim, 10, generator=g)
    (X.T @ (X @ W))  # warm-up
    t0 = time.perf_counter()
    for _ in range(passes):
        X.T @ (X @ W)
    return passes / (time.perf_counter() - t0)


def _interleaved(rate, counts: list[int], repeats: int) -> dict[int, float]:
    """The best rate per thread count over ``repeats`` rounds of (1, default): a load change hits both."""
    best = {t: 0.0 for t in counts}
    for _ in range(repeats):
        for t in counts:
            best[t] = max(best[t], rate(t))
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12, help="training steps per timing")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved timings per thread count (best kept)")
    ap.add_argument("--note", default="")
    ap.add_argument("--condition", default="shared", help="the key column telling runs apart: quiet or shared cores")
    ap.add_argument("--out", default=str(REPO / "results" / "threads.csv"))
    args = ap.parse_args(argv)
    default = torch.get_num_threads()
    counts = sorted({1, default})
    rows = []
    prov = provenance(note=args.note)
    for arch, width in TRAIN_CASES:
        best = _interleaved(lambda t: train_rate(arch, width, args.steps, t), counts, args.repeats)
        rows += [{"condition": args.condition, "stage": "train", "case": f"{arch} w{width} batch 64", "size": train_size(arch, width),
                  "threads": t, "rate": round(r, 1), "unit": "img/s",
                  "speedup_vs_default": round(r / best[default], 2) if t == 1 else "", **prov}
                 for t, r in best.items()]
        print(rows[-2:], flush=True)
    for n, d in PROBE_CASES:
        best = _interleaved(lambda t: probe_rate(n, d, t), counts, args.repeats)
        rows += [{"condition": args.condition, "stage": "probe", "case": f"{n} x {d} float32, 10 classes", "size": n * d, "threads": t,
                  "rate": round(r, 2), "unit": "passes/s",
                  "speedup_vs_default": round(r / best[default], 2) if t == 1 else "", **prov}
                 for t, r in best.items()]
        print(rows[-2:], flush=True)
    torch.set_num_threads(default)
    upsert(args.out, rows, key=("condition", "stage", "case", "threads"))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
