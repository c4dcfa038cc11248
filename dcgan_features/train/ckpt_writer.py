"""Checkpoint writes that do not stall training: a snapshot now, the file on a background thread.

At a step boundary the loop takes a snapshot (every tensor copied to the host, so
training may go on changing the live ones) and hands it to a :class:`CheckpointWriter`.
With ``background=True`` the ``torch.save`` + fsync + rename happens on a thread while
the next steps run; each file still appears atomically (``checkpoint.save``). At most one
write is in flight: the next :meth:`~CheckpointWriter.submit` (and :meth:`~CheckpointWriter.wait`)
first waits for the previous one and re-raises its error, so a failed write (a full disk)
stops the run at the next checkpoint or at its end, never silently.

>>> import tempfile, os, torch
>>> writer = CheckpointWriter(background=True)
>>> live = {"w": torch.zeros(2)}
>>> path = os.path.join(tempfile.mkdtemp(), "c.pt")
>>> writer.submit([path], snapshot(live), save=lambda p, obj: torch.save(obj, p))
>>> _ = live["w"].add_(1)      # training goes on; the snapshot is unaffected
>>> writer.wait()
>>> torch.load(path)["w"].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

import torch

__all__ = ["CheckpointWriter", "snapshot"]


def snapshot(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor cloned to the host (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes snapshots to disk, in the background or at once; one write in flight at most."""

    def __init__(self, background: bool = True):
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, paths: Sequence[str | os.PathLike], payload: Any,
               save: Callable[[str | os.PathLike, Any], None]) -> None:
        """Write ``payload`` (already a :func:`snapshot`) to each of ``paths`` with ``save``."""
        self.wait()
        if not self.background:
            for p in paths:
                save(p, payload)
            return
        self._thread = threading.Thread(target=self._write, args=(list(paths), payload, save),
                                        name="checkpoint-writer", daemon=False)
        self._thread.start()

    def _write(self, paths, payload, save) -> None:
        try:
            for p in paths:
                save(p, payload)
        except BaseException as e:  # handed to the training thread by wait()
            self._error = e

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write in flight is on disk; re-raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
