"""What a training run keeps on disk besides the weights: RNG states, resume checks, the run folder.

``train.py`` owns the loop; this module owns everything that makes a run survive a kill:
capturing and restoring every RNG the loop draws from, checking that a checkpoint fits
the run that wants to resume from it, and the files of ``--out`` (``config.json``,
``metrics.jsonl``, ``samples/epoch_NNN.png``, ``losses.png``), each written atomically.

>>> state = capture_rng(torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
>>> sorted(state)
['cuda', 'data', 'numpy', 'python', 'torch', 'z']
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import random
import signal
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..nets import checkpoint
from ..core.atomic import atomic_path, check_writable_dir, write_error, write_text_atomic
from ..core.errors import CheckpointError, UserError

# Settings a resumed run must share with the checkpoint: they define the model, the data
# (name and folder; the images themselves are compared by data_fingerprint), the data order
# and the optimisation, so continuing with other values would not be "the same run".
RESUME_MUST_MATCH = ("arch", "width", "nz", "dataset", "data_dir", "batch_size", "seed", "lr", "beta1")


# ------------------------------------------------------------------------------ RNG


def capture_rng(data_gen: torch.Generator, z_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG state a run depends on, as CPU tensors, ints, floats and tuples: nothing a
    ``weights_only`` load refuses (numpy's key array is stored as a tensor)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": _numpy_state_as_tensors(np.random.get_state()),
        "python": random.getstate(),
        "data": data_gen.get_state(),
        "z": z_gen.get_state(),
    }


def _numpy_state_as_tensors(state: tuple) -> dict[str, Any]:
    algorithm, keys, pos, has_gauss, cached = state
    return {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_tensors(state: dict | tuple) -> tuple:
    if isinstance(state, tuple):  # a checkpoint written before the state became tensors
        return state
    return (state["algorithm"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def restore_rng(state: dict[str, Any], data_gen: torch.Generator, z_gen: torch.Generator,
                restore_global: bool = True) -> None:
    """Put every RNG back where :func:`capture_rng` found it.

    ``restore_global=False`` (ranks other than 0 under torchrun) keeps the per-rank global
    seeds: only rank 0's global states are saved, and the loop draws nothing from them.
    """
    data_gen.set_state(state["data"])
    z_gen.set_state(state["z"])
    if not restore_global:
        return
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
    np.random.set_state(_numpy_state_from_tensors(state["numpy"]))
    random.setstate(state["python"])


# --------------------------------------------------------------------------- resume


def check_resumable(ckpt: dict, config: dict, path: str | os.PathLike) -> None:
    """Raise CheckpointError (one line) unless ``ckpt`` is a training checkpoint of this run."""
    if "optimizer_G" not in ckpt or "step" not in ckpt:
        raise CheckpointError(f"checkpoint {str(path)!r} holds weights only (no optimizer/step state), "
                              "so it cannot be resumed; start a fresh run with another --out")
    stored = ckpt.get("config", {})
    for key in RESUME_MUST_MATCH:
        if key in stored and stored[key] != config[key]:
            flag = "--" + key.replace("_", "-")
            if stored[key] is None:
                raise CheckpointError(f"checkpoint {str(path)!r} was trained without {flag}, this run asks for "
                                      f"{config[key]}; drop {flag} or use a fresh --out")
            raise CheckpointError(f"checkpoint {str(path)!r} was trained with {flag} {stored[key]}, "
                                  f"this run asks for {config[key]}; pass {flag} {stored[key]} or use a fresh --out")


def check_epochs(ckpt: dict, config: dict, path: str | os.PathLike) -> None:
    """Asking a resumed run for fewer epochs (or steps) than it has done is an error, not a rewrite."""
    step, per_epoch = int(ckpt["step"]), ckpt.get("steps_per_epoch")
    if per_epoch and config["epochs"] * int(per_epoch) < step:
        done = step / int(per_epoch)
        raise CheckpointError(f"checkpoint {str(path)!r} has already trained {done:g} epochs (step {step}); "
                              f"--epochs {config['epochs']} is fewer: pass --epochs {math.ceil(done)} or more "
                              "to continue, or use a fresh --out")
    if config.get("max_steps") is not None and config["max_steps"] < step:
        raise CheckpointError(f"checkpoint {str(path)!r} is at step {step}; --max-steps {config['max_steps']} "
                              "is fewer: raise it to continue, or use a fresh --out")


def data_fingerprint(images: torch.Tensor, rows: int = 64) -> str:
    """The identity of the training images: their shape and a hash of ``rows`` evenly spaced ones.

    Cheap at any size (64 images are read), and it changes when a resumed run is pointed at
    other images under the same dataset name.

    >>> x = torch.zeros(10, 3, 2, 2, dtype=torch.uint8)
    >>> a = data_fingerprint(x); x[9, 0, 0, 0] = 1
    >>> a.split(":")[0], a == data_fingerprint(x)
    ('10x3x2x2', False)
    """
    n = int(images.shape[0])
    idx = torch.linspace(0, max(n - 1, 0), min(n, rows)).round().long().unique()
    h = hashlib.sha256(repr(tuple(images.shape)).encode())
    h.update(images[idx.to(images.device)].contiguous().cpu().numpy().tobytes())
    return f"{'x'.join(map(str, images.shape))}:{h.hexdigest()[:16]}"


def check_same_data(ckpt: dict, fingerprint: str, path: str | os.PathLike) -> None:
    """The resumed run trains on the very images the checkpoint was trained on."""
    stored = ckpt.get("data_fingerprint")
    if stored is not None and stored != fingerprint:
        raise CheckpointError(f"checkpoint {str(path)!r} was trained on other images ({stored}; these are "
                              f"{fingerprint}): point --data-dir at the run's data, or use a fresh --out")


def load_resumable(path: str | os.PathLike, config: dict) -> dict:
    """The checkpoint ``--resume`` continues from, checked against this run's ``config``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint at {str(path)!r}; run without --resume to start")
    ckpt = checkpoint.load(path)
    check_resumable(ckpt, config, path)
    check_epochs(ckpt, config, path)
    checkpoint.models_from_payload(ckpt, str(path))  # weights that do not fit fail here, in one line
    return ckpt


@contextlib.contextmanager
def catch_signals(flag: dict) -> Iterator[None]:
    """SIGINT/SIGTERM only set ``flag["signal"]``; the loop checkpoints at the next step boundary."""
    def handler(signum, _frame):
        flag["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. a notebook worker): keep default handling
        pass
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


# ------------------------------------------------------------------------ run folder


class RunFolder:
    """The files of one run's ``--out``; only rank 0 constructs one.

    ``OWN`` are the names a run writes; anything else in the folder (or a ``config.json``
    this tool did not write) is foreign, and a new run refuses such a folder unless told to
    overwrite.
    """

    OWN = frozenset({"config.json", "metrics.jsonl", "losses.png", "checkpoints", "samples", ".lock"})

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"
        self.samples = self.out / "samples"
        self.metrics = self.out / "metrics.jsonl"
        self.last = self.checkpoints / "last.pt"

    def prepare(self) -> None:
        """Create ``out`` (and parents) or fail in one line naming why."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output folder {str(self.out)!r} ({e.strerror or type(e).__name__}); "
                            "choose a writable --out") from None
        check_writable_dir(self.out)

    def check_fresh(self, overwrite: bool) -> None:
        """A new run may start here: no run of ours, nothing foreign (unless ``overwrite``)."""
        if overwrite:
            return
        if self.last.exists():
            raise UserError(f"{str(self.out)!r} already holds a run; pass --resume to continue it, --overwrite "
                            "to replace it, or choose another --out")
        foreign = sorted(p.name for p in self.out.iterdir() if p.name not in self.OWN or p.is_symlink()) \
            if self.out.is_dir() else []  # a link, even under one of our names, was not written here
        if not foreign and (self.out / "config.json").exists() and not self._config_is_ours():
            foreign = ["config.json"]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UserError(f"{str(self.out)!r} holds files this tool did not write ({shown}); choose another "
                            "--out or pass --overwrite")

    def _config_is_ours(self) -> bool:
        try:
            record = json.loads((self.out / "config.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(record, dict) and isinstance(record.get("config"), dict) and "package_version" in record

    def start_fresh(self) -> None:
        """A new run begins: an earlier run's last checkpoint and metric lines go (--overwrite)."""
        self.last.unlink(missing_ok=True)  # never resumed by accident under the new config.json
        self.truncate_metrics(0)

    def create(self) -> None:
        for d in (self.out, self.checkpoints, self.samples):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_error(d, e) from None

    def write_config(self, record: dict) -> None:
        write_text_atomic(self.out / "config.json", json.dumps(record, indent=2, sort_keys=True) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines past ``step``: a killed run may have logged beyond its last
        checkpoint, or died in the middle of a line."""
        keep = [row for row in self.read_metrics() if row.get("step", step + 1) <= step]
        if self.metrics.is_file():
            write_text_atomic(self.metrics, "".join(json.dumps(row) + "\n" for row in keep))

    def append_metrics(self, row: dict) -> None:
        # One short line per append: a kill can at worst truncate the last line, and
        # read_metrics skips a partial last line.
        try:  # O_NOFOLLOW: a link planted at metrics.jsonl must not aim the appends at another file
            fd = os.open(self.metrics, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UserError(f"{str(self.metrics)!r} is a symbolic link, not a file this tool wrote; it is left "
                                "as it is: remove it, or choose another --out") from None
            raise write_error(self.metrics, e) from None
        try:
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise write_error(self.metrics, e) from None

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        rows = []
        for line in self.metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def save_samples(self, images: torch.Tensor, epoch: int) -> Path:
        """A grid of G's images in [-1, 1] as ``samples/epoch_NNN.png``."""
        from torchvision.utils import save_image

        path = self.samples / f"epoch_{epoch:03d}.png"
        with atomic_path(path) as tmp:
            save_image(images.float().cpu(), tmp, nrow=8, normalize=True, value_range=(-1, 1), format="png")
        return path

    def plot_losses(self) -> Path | None:
        """``losses.png``: both losses and D's mean outputs against the step."""
        rows = self.read_metrics()
        if not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in rows]
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        ax1.plot(steps, [r["loss_d"] for r in rows], label="loss D")
        ax1.plot(steps, [r["loss_g"] for r in rows], label="loss G")
        ax1.set_ylabel("BCE")
        ax1.legend()
        ax2.plot(steps, [r["d_x"] for r in rows], label="D(x)")
        ax2.plot(steps, [r["d_g_z"] for r in rows], label="D(G(z))")
        ax2.set_ylabel("mean sigmoid")
        ax2.set_xlabel("step")
        ax2.legend()
        fig.tight_layout()
        path = self.out / "losses.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path
