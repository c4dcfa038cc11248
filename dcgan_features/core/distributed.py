"""One command run by a ``torchrun`` group: shares of rows, agreed verdicts, summed products.

What extraction and the probes need beyond :func:`~dcgan_features.core.devices.init_distributed`:

* :func:`share`: the contiguous rows ``[lo, hi)`` a rank takes, in whole units (batches);
* :func:`agree`: every rank runs a check and all get the same verdict: one failure
  anywhere becomes the same :class:`GroupError` on every rank, printed once (by rank 0);
* :func:`gather_rows` / :func:`all_sum`: the two collectives, wrapped so that a rank that
  died shows up as one line on the others instead of a traceback or a hang;
* :func:`stop_on_sigterm`: torchrun stops the other ranks with SIGTERM when one fails;
  each then prints one line and exits at once (its files are kill -9 safe).

>>> share(10, 3, 0, align=4), share(10, 3, 1, align=4), share(10, 3, 2, align=4)
((0, 4), (4, 8), (8, 10))
>>> share(10, 2, 1)
(5, 10)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from typing import Any, Callable, Iterator, Sequence

import torch

from .devices import DistContext, init_distributed
from .errors import UserError


class GroupError(UserError):
    """A failure the whole group agreed on; ``quiet`` on every rank but 0, so it prints once."""

    def __init__(self, message: str, quiet: bool = False):
        super().__init__(message)
        self.quiet = quiet


def share(n: int, world: int, rank: int, align: int = 1) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` for ``rank``: contiguous, in units of ``align`` rows (the last
    unit may be short), the first ``units % world`` ranks one unit more. Rank order is row order.
    """
    units = -(-n // align)
    base, extra = divmod(units, world)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (rank < extra)
    return min(lo * align, n), min(hi * align, n)


def current() -> DistContext:
    """The torchrun context of this process if it has joined a group, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistContext()


@contextlib.contextmanager
def joined(device_flag: str) -> Iterator[DistContext]:
    """Join the torchrun group for a command (a single-process context without torchrun);
    leave it at the end unless the caller had joined already (it then owns the group)."""
    import torch.distributed as dist

    owner = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device_flag) if owner else current()
    try:
        yield ctx
    finally:
        if owner and ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()


class LostRankError(GroupError):
    """A collective failed: another rank died or stopped answering."""


def _lost(e: BaseException) -> LostRankError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". This is")[0][:160]  # gloo: "[file.cc:561] Connection closed..."
    return LostRankError(f"lost contact with another rank (it failed or was killed; torchrun's summary names it): "
                         f"{first}")


@contextlib.contextmanager
def collective() -> Iterator[None]:
    """A failed collective (a peer died, a timeout) -> one :class:`GroupError` line."""
    import torch.distributed as dist

    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        raise _lost(e) from None


def agree(ctx: DistContext, check: Callable[[], Any]) -> list[Any]:
    """Run ``check`` on every rank and return all ranks' results (rank order) on every rank.

    A :class:`UserError` on any rank is raised on every rank as the same
    :class:`GroupError` (naming the rank), quiet except on rank 0. Single process: ``[check()]``.
    """
    try:
        mine = (True, check())
    except UserError as e:
        if not ctx.enabled:
            raise
        mine = (False, str(e))
    if not ctx.enabled:
        return [mine[1]]
    import torch.distributed as dist

    everyone: list = [None] * ctx.world
    with collective():
        dist.all_gather_object(everyone, mine)
    for r, (ok, value) in enumerate(everyone):
        if not ok:
            raise GroupError(value if r == ctx.rank or value.startswith("rank ") else f"rank {r}: {value}",
                             quiet=ctx.rank != 0)
    return [value for _, value in everyone]


def same_launch(ctx: DistContext, settings: dict) -> None:
    """Refuse, on every rank, a group whose ranks were given other ``settings`` than rank 0
    (JSON-able values: flags, file fingerprints); the line names the rank and the values."""
    mine = agree(ctx, lambda: settings)

    def check() -> None:
        first = mine[0]
        if settings != first:
            diff = "; ".join(f"{k} {json.dumps(settings.get(k))} vs {json.dumps(first.get(k))}"
                             for k in sorted(set(settings) | set(first)) if settings.get(k) != first.get(k))
            raise UserError(f"rank {ctx.rank} was launched with other settings than rank 0 ({diff}); "
                            f"launch every rank with the same command")

    agree(ctx, check)


def gather_rows(ctx: DistContext, mine: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; ``counts[r]`` rows come from rank ``r``."""
    if not ctx.enabled:
        return mine
    import torch.distributed as dist

    pad = max(counts)
    buf = torch.zeros((pad, *mine.shape[1:]), dtype=mine.dtype, device=mine.device)
    buf[:mine.shape[0]] = mine
    parts = [torch.empty_like(buf) for _ in range(ctx.world)]
    with collective():
        dist.all_gather(parts, buf)
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def all_sum(ctx: DistContext, t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks, in place; returns ``t``."""
    if ctx.enabled:
        import torch.distributed as dist

        with collective():
            dist.all_reduce(t)
    return t


@contextlib.contextmanager
def stop_on_sigterm(ctx: DistContext, what: str) -> Iterator[None]:
    """Under torchrun, SIGTERM (sent to the other ranks when one fails) prints one ``error:``
    line naming ``what`` was kept and exits at once, as kill -9 would: every file this
    package writes is safe against that, and cleanup code running inside a group that has
    lost a member could wait on it. No-op for one process."""
    if not ctx.enabled:
        yield
        return

    def handler(signum, _frame):
        sys.stderr.write(f"error: rank {ctx.rank} stopped by {signal.Signals(signum).name} (torchrun stops the "
                         f"job when a rank fails); {what}\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
