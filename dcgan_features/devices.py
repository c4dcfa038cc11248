"""Which device a process trains or extracts on, and its place in a ``torchrun`` group.

``resolve_device`` turns the ``--device auto|cpu|cuda`` flag into a torch.device (a one-line
UserError when CUDA is asked for and absent); ``device_name`` names the hardware for
config files and benchmark rows; ``free_memory`` says how many bytes a new allocation can
get there (what the probes' caches and the training data are sized by); ``init_distributed`` joins the process group that
torchrun describes in the environment (NCCL on GPUs, gloo on CPUs) or returns a
single-process context when there is none.

>>> resolve_device("cpu"), init_distributed("cpu").world
(device(type='cpu'), 1)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda")  # the --device choices; "cuda:N" is accepted too


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` = cuda if available; ``cuda`` without CUDA is a one-line UserError.

    The one place every command turns ``--device`` into a torch.device; ``cuda`` means
    ``cuda:<local_rank>`` so each torchrun process takes its own GPU.
    """
    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; use {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but CUDA is not available here; use --device cpu or auto")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """Human-readable name of ``device``: the GPU model, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def mem_available() -> int:
    """Bytes of memory the kernel says a new allocation can get (MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def free_memory(device: torch.device) -> int:
    """Bytes a new allocation can get on ``device``: free GPU memory, or MemAvailable on the host."""
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else mem_available()


@dataclass
class DistContext:
    """This process's rank among ``world`` (1: not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_flag: str) -> DistContext:
    """Join the torchrun group if launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_flag != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return ctx
