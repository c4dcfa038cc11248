r"""The settings of one training run: a small dataclass, checked, and turned back into a command.

Every field is a ``dcgan-features train`` flag; config.json and every checkpoint store
them all, and a resumed run is checked against them (``train_state.RESUME_MUST_MATCH``).

>>> cfg = TrainConfig(dataset="digits", arch="dcgan32", width=16, epochs=5, out="runs/d", lr=1e-4)
>>> print(cfg.resume_command().replace(" --", "\n  --"))
dcgan-features train
  --dataset digits
  --arch dcgan32
  --epochs 5
  --width 16
  --batch-size 128
  --lr 0.0001
  --beta1 0.5
  --seed 0
  --device auto
  --amp
  --no-compile
  --no-cuda-graph
  --joint-d
  --async-ckpt
  --sample-every 1
  --ckpt-every 500
  --keep-every 10
  --log-every 50
  --out runs/d
  --resume
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass

from ..core.errors import UserError

# Which GPU paths a row of results/ shows running, and which row (issue 24). `train --help`
# and report.html print this, the README's Train section repeats it: change it together with
# the row that verifies a path, never without one.
GPU_VERIFIED: tuple[tuple[str, str], ...] = (
    ("eager training, bf16 autocast, as of commit 482afaf (two D passes, uint8 batches)",
     'results/accuracy.csv, the H100 "trained D" rows (imagenet32 width 128, 15 epochs)'),
    ("--joint-d, --prenormalize, fused Adam, --async-ckpt on CUDA", "no GPU row yet (tested on the CPU)"),
    ("--cuda-graph", "no GPU row (off by default; tested on the CPU through a stand-in graph)"),
    ("--compile, torchrun on GPUs", "no GPU row"),
)


@dataclass
class TrainConfig:
    """Every setting of a run; ``width``/``nz`` None mean the architecture's default."""

    dataset: str
    arch: str
    out: str
    epochs: int = 25
    width: int | None = None
    data_dir: str | None = None
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    nz: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast; takes effect on CUDA only (config.json records amp_effective)
    compile: bool = False
    # The whole step as one CUDA graph. Off: the graphed step has never run on a GPU (no results
    # row); on only when a row shows graphed and eager training agree (issue 24).
    cuda_graph: bool = False
    joint_d: bool = True  # one D pass over cat(real, fake), BN statistics per half (same mathematics)
    prenormalize: bool | None = None  # data on the device in the compute dtype; None: when it fits
    async_ckpt: bool = True  # checkpoints written from a snapshot on a background thread
    resume: bool = False
    overwrite: bool = False  # start afresh in an --out holding another run or files this tool did not write
    sample_every: int = 1  # epochs
    ckpt_every: int = 500  # steps; last.pt is also written at every epoch end
    keep_every: int = 10  # epochs; keep checkpoints/epoch_NNN.pt (0: never)
    log_every: int = 50  # steps between metric lines (each one syncs the device)
    max_steps: int | None = None  # stop early after this many steps in total (smoke runs)
    progress: bool | None = None  # None: a bar on a terminal, a line per epoch (or 10%) off one; False: silent
    threads: int | None = None  # CPU threads; None: core.threads' policy (one for small models) or OMP_NUM_THREADS

    def resume_command(self) -> str:
        """The command line that continues this run.

        Every setting is spelled out, defaults included, so a CLI whose defaults changed since
        the run started still resumes it as it was; only unset (None) fields are left out.
        """
        parts = ["dcgan-features train", f"--dataset {shlex.quote(self.dataset)}", f"--arch {shlex.quote(self.arch)}"]
        for f in dataclasses.fields(self):
            if f.name in ("dataset", "arch", "out", "resume", "overwrite", "progress"):
                continue
            value = getattr(self, f.name)
            if value is not None:
                flag = "--" + f.name.replace("_", "-")
                parts.append(flag if value is True else f"--no-{flag[2:]}" if value is False
                             else f"{flag} {shlex.quote(str(value))}")
        parts += [f"--out {shlex.quote(self.out)}", "--resume"]
        return " ".join(parts)

    def validate(self) -> None:
        """Raise a one-line UserError for a value no run can use."""
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.lr > 0 and math.isfinite(self.lr), "--lr must be a positive number"),
            (0 <= self.beta1 < 1, "--beta1 must be in [0, 1)"),
            (self.sample_every >= 1 and self.ckpt_every >= 1 and self.log_every >= 1,
             "--sample-every, --ckpt-every and --log-every must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
