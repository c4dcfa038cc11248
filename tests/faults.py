"""Faults the tests inject into a real process, from the outside: the product reads no test hook.

Run as a launcher, ``python tests/faults.py FAULT N -- COMMAND ARGS...``: it patches one seam
of the product in this process, then runs ``dcgan-features COMMAND ARGS...``
(:func:`dcgan_features.cli.main`). A torchrun worker calls the installers directly.

- ``kill-after-rows N``: SIGKILL the process at the first feature-file commit once ``N``
  rows went to that file's writer (:class:`~dcgan_features.extract.writer.FeatureWriter`;
  counted per file, so a chain's later extractions are not affected by an earlier one).
- ``kill-after-checkpoint N``: SIGKILL the process once the training checkpoint of step
  ``N`` is on disk (:class:`~dcgan_features.train.ckpt_writer.CheckpointWriter`).

A real SIGKILL, not an exception: nothing of the product's clean-up runs, as after ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_rows(n: int) -> None:
    """Patch FeatureWriter so the process dies at the commit that follows its ``n``-th row."""
    from dcgan_features.extract.writer import FeatureWriter

    write, commit = FeatureWriter.write, FeatureWriter.commit

    def counting_write(self, split, lo, rows):
        self._fault_rows = getattr(self, "_fault_rows", 0) + len(rows)
        return write(self, split, lo, rows)

    def commit_then_maybe_die(self, split):
        saved = commit(self, split)
        if getattr(self, "_fault_rows", 0) >= n:
            _die()
        return saved

    FeatureWriter.write, FeatureWriter.commit = counting_write, commit_then_maybe_die


def kill_after_checkpoint(step: int) -> None:
    """Patch CheckpointWriter so the process dies once the checkpoint of ``step`` is written."""
    from dcgan_features.train.ckpt_writer import CheckpointWriter

    submit = CheckpointWriter.submit

    def submit_then_maybe_die(self, paths, payload, save):
        submit(self, paths, payload, save)
        if isinstance(payload, dict) and payload.get("step") == step:
            self.wait()  # the file is whole on disk, then the process vanishes
            _die()

    CheckpointWriter.submit = submit_then_maybe_die


FAULTS = {"kill-after-rows": kill_after_rows, "kill-after-checkpoint": kill_after_checkpoint}


def launch(argv: list[str]) -> None:
    """``FAULT N -- COMMAND...``: install the fault, then run the CLI on the rest."""
    if len(argv) < 3 or argv[0] not in FAULTS or argv[2] != "--":
        raise SystemExit(f"usage: faults.py {{{','.join(FAULTS)}}} N -- COMMAND ARGS...")
    FAULTS[argv[0]](int(argv[1]))
    from dcgan_features.cli import main

    main(argv[3:])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # this tree's package, whatever is installed
    launch(sys.argv[1:])
