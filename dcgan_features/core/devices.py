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


def resolve_device(name: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` = cuda if available; ``cuda`` without CUDA is a one-line UserError.

    The one place every command turns ``--device`` into a torch.device; ``cuda`` means
    ``cuda:<local_rank>`` so each torchrun process takes its own GPU (default: the current
    CUDA device, which :func:`init_distributed` sets to the local rank's).
    """
    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; use {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but CUDA is not available here; use --device cpu or auto")
        if ":" in name:
            return torch.device(name)
        return torch.device(f"cuda:{torch.cuda.current_device() if local_rank is None else local_rank}")
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


def machine_label(device: torch.device) -> str:
    """``device`` as a results row names it: the GPU model and index, or the CPU model and the
    cores this process may use (``Intel(R) Xeon(R) Processor, 2 cores``)."""
    if device.type == "cuda":
        return f"{device_name(device)} ({device})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device_name(device)}, {cores} cores"


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
    """Join the torchrun group if launched by torchrun (WORLD_SIZE > 1).

    NCCL when the ranks use GPUs, gloo on CPUs. A launch the group cannot be formed from
    (no ``MASTER_ADDR``, no ``RANK``, an unreachable rendezvous, ``--device cuda`` without
    CUDA) is a one-line UserError with the fix, raised on every rank; waiting for missing
    ranks ends at torch's rendezvous timeout.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch.distributed as dist

    launch = ("launch with torchrun, which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
              "(e.g. torchrun --standalone --nproc-per-node 2 -m dcgan_features.cli ...)")
    if "RANK" not in os.environ:
        raise UserError(f"WORLD_SIZE={world} is set but RANK is not; {launch}")
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if str(device_flag).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asks for NCCL on GPUs under torchrun, but CUDA is not available here; "
                        "use --device cpu (gloo)")
    use_cuda = device_flag != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if ctx.local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {ctx.local_rank} has no GPU (this node has {torch.cuda.device_count()}); "
                            f"start at most that many processes per node")
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (ValueError, RuntimeError) as e:  # torch.distributed's errors (DistError) are RuntimeErrors
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"could not join the torchrun group: {first}; {launch}") from None
    return ctx
