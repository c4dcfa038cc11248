"""Progress of a long stage: a tqdm bar on a terminal, a line with the ETA every so often off one.

Every stage longer than a few seconds (training, extraction, each probe column) reports
through :class:`Progress`, so a terminal shows a bar with its ETA and a log file (stderr
redirected) still shows life: one line each ``every`` units (default: a tenth of the total,
as it grows) and at least one each ``max_silence`` seconds, each with the count, the rate and
the ETA; none in the first ``quiet_seconds`` (a stage that ends sooner says nothing more).

>>> import io
>>> clock = iter(range(0, 100, 10)).__next__   # 10 s per call
>>> out = io.StringIO()
>>> with Progress(4, "probe", unit="fit", stream=out, every=2, quiet_seconds=0, clock=clock) as p:
...     for _ in range(4):
...         p.update()
>>> print(out.getvalue(), end="")
probe: 2/4 fit (50%), 0.10 fit/s, 20 s elapsed, ETA 20 s
probe: 4/4 fit (100%), 0.10 fit/s, 40 s elapsed, done
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, TextIO

MODES = ("auto", "bar", "lines", "off")
QUIET_SECONDS = 5.0  # no line before this: a stage that ends sooner says nothing more than its result


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``.

    >>> format_seconds(42.4), format_seconds(200), format_seconds(7500)
    ('42 s', '3 min 20 s', '2 h 05 min')
    """
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def resolve_mode(mode: str | bool | None, stream: TextIO) -> str:
    """``auto``/None/True: a bar on a terminal, lines off one; False: off."""
    if mode is False:
        return "off"
    if mode in (None, True, "auto"):
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: one of {MODES}")
    return str(mode)


class Progress:
    """``total`` units of work named ``desc``; :meth:`update` as they are done."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0,
                 mode: str | bool | None = "auto", stream: TextIO | None = None, every: int | None = None,
                 max_silence: float = 60.0, quiet_seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        self.mode = resolve_mode(mode, self.stream)
        self.total, self.desc, self.unit, self.n, self.initial = int(total), desc, unit, int(initial), int(initial)
        self.fixed_every = int(every) if every else None
        self.every = self._every()
        self.max_silence, self.clock = max_silence, clock
        self.quiet_seconds = QUIET_SECONDS if quiet_seconds is None else quiet_seconds
        self.postfix = ""
        self.start = self.last_line = clock()
        self.next_line = (self.n // self.every + 1) * self.every
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit, dynamic_ncols=True,
                            file=self.stream)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _every(self) -> int:
        return max(1, self.fixed_every or math.ceil(max(self.total, 1) / 10))

    def add_total(self, n: int) -> None:
        """More work than first known (a C grid widened): the total grows by ``n``."""
        self.total += int(n)
        self.every = self._every()
        self.next_line = (self.n // self.every + 1) * self.every
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def set_postfix(self, **values) -> None:
        """Values shown after the bar, or at the end of the next line (losses, img/s)."""
        if self.bar is not None:
            self.bar.set_postfix(values)
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines":
            now = self.clock()
            due = self.n >= self.next_line or self.n >= self.total or now - self.last_line >= self.max_silence
            if due and now - self.start >= self.quiet_seconds:
                self._line(now)
            if due:
                self.next_line = (self.n // self.every + 1) * self.every

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.n >= self.total:
            eta = "done"
        else:
            eta = "ETA " + (format_seconds((self.total - self.n) / rate) if rate > 0 else "unknown")
        pct = 100.0 * self.n / self.total if self.total else 100.0
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2f} {self.unit}/s, "
              f"{format_seconds(elapsed)} elapsed, {eta}{tail}", file=self.stream, flush=True)
        self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
