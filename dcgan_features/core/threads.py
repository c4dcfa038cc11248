"""How many CPU threads torch uses for one stage: one thread for small work, torch's default above.

torch's default on a CPU is one thread per core. For the small models and feature matrices
of the quickstart that is much slower than one thread: each op is too short to share, and
on cores shared with other processes the threads wait for each other (issue 25: the digits
quickstart took 15-17 minutes by default, 122 s with ``OMP_NUM_THREADS=1``;
``results/threads.csv``, ``benchmarks/threads.py``, has this machine's rates at 1 and 2
threads). So, on a CPU and unless the user chose:

* ``--threads N`` wins;
* then ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``) in the environment, which torch reads
  itself: left alone;
* otherwise one thread when the stage's work ``size`` (parameters of the models for training
  and extraction, rows x dim of the feature matrix for the probes) is below the stage's
  threshold, torch's default count above it.

A GPU run is left alone: its CPU threads only feed the device. The choice is applied for the
stage only (:func:`thread_scope` restores the count) and recorded (``ThreadChoice.record``).

>>> choose_threads(None, size=10, threshold=100, env={}).threads
1
>>> choose_threads(None, size=10, threshold=100, env={"OMP_NUM_THREADS": "2"}).reason
'OMP_NUM_THREADS=2 in the environment'
>>> choose_threads(3, size=10, threshold=100, env={}).record()
{'threads': 3, 'threads_reason': '--threads 3'}
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

from .errors import UserError

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Below these sizes one thread is used. results/threads.csv (this 2-core machine, its cores shared
# by 8 jobs): one thread was faster than torch's default (2) at every size measured, 3x to 14x for
# training (dcgan32 width 16-64, imagenet32 width 32: up to 1.7M parameters) and 1.4x to 4.3x for a
# probe pass (up to 20000 x 3584). Above the largest size measured torch's default stays: a big
# model on cores of its own is where more threads pay, and that is not measured here.
TRAIN_SMALL_PARAMS = 2_000_000
PROBE_SMALL_ELEMENTS = 80_000_000


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count (None: leave torch's as it is) and why."""

    threads: int | None
    reason: str

    def record(self) -> dict:
        """The columns a run records: ``threads`` (None: torch's own count) and ``threads_reason``."""
        return {"threads": self.threads, "threads_reason": self.reason}


def choose_threads(requested: int | None, size: int | None, threshold: int, device_type: str = "cpu",
                   env: Mapping[str, str] | None = None) -> ThreadChoice:
    """The thread count for a stage of ``size`` whose one-thread threshold is ``threshold`` (size None:
    not known, torch's default)."""
    env = os.environ if env is None else env
    if requested is not None:
        if int(requested) < 1:
            raise UserError(f"--threads must be >= 1, got {requested}")
        return ThreadChoice(int(requested), f"--threads {int(requested)}")
    if device_type != "cpu":
        return ThreadChoice(None, f"torch's default (device {device_type})")
    for var in ENV_VARS:
        if env.get(var):
            return ThreadChoice(None, f"{var}={env[var]} in the environment")
    if size is None:
        return ThreadChoice(None, "torch's default (no model size to compare)")
    if size < threshold:
        return ThreadChoice(1, f"one thread: size {size:,} below {threshold:,} (results/threads.csv)")
    return ThreadChoice(None, f"torch's default: size {size:,} at or above {threshold:,}")


@contextlib.contextmanager
def thread_scope(choice: ThreadChoice) -> Iterator[ThreadChoice]:
    """torch uses ``choice.threads`` inside the block; the count before it is restored after."""
    import torch

    before = torch.get_num_threads()
    if choice.threads is not None and choice.threads != before:
        torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def model_size(*modules) -> int:
    """Parameters of the given ``nn.Module`` s together (the training and extraction size)."""
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())
