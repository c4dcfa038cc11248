"""Memory bounds from the machine: an allocation a file header or an option asks for is checked
against the memory available before it is made, so a typo or a crafted header gives one line
(the size, what is free, how to lower it) instead of an out-of-memory kill or a traceback.

>>> check_fits(1024, "a test buffer", "use less")
>>> check_fits(1 << 62, "the images", "pass --limit N")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
dcgan_features.core.errors.UserError: the images need 4.0 EiB of memory, more than the ... available here; pass --limit N
"""

from __future__ import annotations

import os

from .errors import UserError

__all__ = ["available_bytes", "check_fits", "format_bytes"]


def available_bytes() -> int:
    """Memory this process can still take: ``MemAvailable`` (Linux), bounded by a cgroup limit.

    Elsewhere, the physical memory (``sysconf``); an unknown machine is not bounded.
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 1 << 62
    return min(avail, _cgroup_room())


def _cgroup_room() -> int:
    """What a cgroup v2 memory limit still allows (unlimited outside one)."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return 1 << 62
    return 1 << 62 if limit == "max" else max(int(limit) - used, 0)


def format_bytes(n: float) -> str:
    """``3.2 GiB``: a byte count for the messages.

    >>> format_bytes(1536)
    '1.5 KiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_fits(nbytes: int, what: str, lower: str, available: int | None = None) -> None:
    """Refuse ``nbytes`` for ``what`` when more than the available memory; ``lower`` says how to ask less."""
    free = available_bytes() if available is None else available
    if nbytes > free:
        raise UserError(f"{what} need {format_bytes(nbytes)} of memory, more than the {format_bytes(free)} "
                        f"available here; {lower}")
