"""The machine's own float32 matrix-multiply rate, measured in the same run as a benchmark.

Every CPU timing in ``results/`` is taken on shared, loaded cores, so seconds cannot be
compared from run to run. What can: the fraction of the machine's matmul rate, measured with
the same threads just before and just after the timed work. ``torch.mm`` on a square float32
size whose three operands (3 x 16 MiB at 2048) overflow the last-level cache, so the rate
includes the trip to memory that real GEMMs make; the median of a few repeats inside a
short time budget.

A benchmark brackets its work with :class:`Yardstick` and adds :meth:`Yardstick.columns` to
its row (next to ``provenance()``'s load average)::

    stick = Yardstick.start(threads)
    ... timed work of `flops` floating-point operations in `seconds` ...
    row.update(stick.columns(flops, seconds))   # measures the end rate here

Columns: ``gflops`` (achieved), ``yardstick_gflops`` (mean of the start and end rates),
``yardstick_start``, ``yardstick_end``, ``fraction`` (= gflops / yardstick_gflops), ``threads``.

    python benchmarks/yardstick.py --threads 2     # prints the rate

>>> r = matmul_rate(threads=1, size=64, budget_s=0.01)
>>> r > 0
True
>>> Yardstick(1, 64, 10.0).columns(flops=5e9, seconds=1.0, end=30.0)["fraction"]
0.25
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Optional

SIZE = 2048  # 3 operands of 16 MiB: past any last-level cache, so the rate includes memory traffic


def matmul_rate(threads: Optional[int] = None, size: int = SIZE, budget_s: float = 1.5, repeats: int = 5) -> float:
    """GFLOP/s of float32 ``torch.mm`` on ``size`` x ``size`` with ``threads`` torch threads
    (None: torch's current count), the median of up to ``repeats`` products within ``budget_s``
    (after one warm-up). Restores the thread count it found."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: pages touched, threads spun up
        rates, t_end = [], time.perf_counter() + budget_s
        while len(rates) < repeats and (not rates or time.perf_counter() < t_end):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            rates.append(2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
        return float(statistics.median(rates))
    finally:
        torch.set_num_threads(before)


@dataclass
class Yardstick:
    """The matmul rate at a benchmark's start; :meth:`columns` measures it again at the end."""

    threads: int
    size: int
    start_gflops: float

    @classmethod
    def start(cls, threads: Optional[int] = None, size: int = SIZE) -> "Yardstick":
        import torch

        threads = int(threads or torch.get_num_threads())
        return cls(threads, size, matmul_rate(threads, size))

    def columns(self, flops: float, seconds: float, end: Optional[float] = None) -> dict:
        """The row's yardstick columns for ``flops`` done in ``seconds``; ``end``: the end rate
        if already measured (else measured now, with the same threads and size)."""
        end = matmul_rate(self.threads, self.size) if end is None else end
        stick = 0.5 * (self.start_gflops + end)
        achieved = flops / seconds / 1e9 if seconds > 0 else float("nan")
        return {"gflops": round(achieved, 2), "yardstick_gflops": round(stick, 2),
                "yardstick_start": round(self.start_gflops, 2), "yardstick_end": round(end, 2),
                "fraction": round(achieved / stick, 3), "threads": self.threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's own]")
    ap.add_argument("--size", type=int, default=SIZE)
    args = ap.parse_args()
    print(f"{matmul_rate(args.threads, args.size):.1f} GFLOP/s (float32 torch.mm {args.size}^2, "
          f"threads {args.threads or 'default'})")


if __name__ == "__main__":
    main()
