"""The checkpoint file: one format written by ``train`` and ``import-theano``, read by all.

A checkpoint is a ``torch.save``'d dict::

    format          "dcgan-features-checkpoint"
    format_version  1
    arch, width, nz architecture name, width, latent size
    G, D            state dicts (plain, never DDP/compile-wrapped)
    trained_on      dataset the weights were trained on (train: its --dataset; imported:
                    what the authors trained on); read it with :func:`trained_on`
    imported        True for weights converted from the authors' Theano files: BN layers
                    then hold no trained running statistics (use bn recompute or batch)
    bn_eps          (optional) BatchNorm eps to set on every BN layer when loading
                    (1e-8 for imported Theano weights; absent: torch's 1e-5)
    config          dict of every setting that produced it (training config or import info)
    package_version
    ...             train adds optimizers, step, epoch and RNG states

It is written atomically (temp file + ``os.replace``), so a reader never sees half a file.
It is read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors and
plain containers (RNG states are tensors too), so loading a crafted file can never run
code from it; a file that names any other global is refused in one line.

>>> import tempfile, os
>>> from dcgan_features.nets.architectures import build
>>> G, D = build("dcgan32", width=4)
>>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
>>> save(path, make_payload("dcgan32", 4, G, D))
>>> G2, D2, ckpt = load_models(path)
>>> ckpt["arch"], ckpt["width"]
('dcgan32', 4)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data import safe_pickle
from .architectures import Discriminator, Generator, get_arch
from ..core.atomic import atomic_path
from ..core.errors import CheckpointError

FORMAT = "dcgan-features-checkpoint"
FORMAT_VERSION = 1
# What the authors trained each released Theano model on (the paper, sections 5.1 and 5.1.2).
AUTHORS_TRAINED_ON = {"svhn32": "svhn", "imagenet32": "imagenet32"}


def make_payload(arch: str, width: int, G: nn.Module, D: nn.Module, *, nz: int | None = None,
                 imported: bool = False, config: dict | None = None, **extra: Any) -> dict:
    """Assemble the dict that :func:`save` writes; ``extra`` keys are stored as given."""
    spec = get_arch(arch)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "width": int(width),
        "nz": int(spec.nz if nz is None else nz),
        "G": _plain_state_dict(G),
        "D": _plain_state_dict(D),
        "imported": bool(imported),
        "config": dict(config or {}),
        "package_version": __version__,
        **extra,
    }


def _plain_state_dict(m: nn.Module) -> dict:
    """State dict without DDP (``module.``) or torch.compile (``_orig_mod.``) prefixes."""
    m = getattr(m, "module", m)
    m = getattr(m, "_orig_mod", m)
    return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}


def save(path: str | os.PathLike, payload: dict) -> None:
    """Write a checkpoint atomically: the old file stays intact until the new one is whole."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())


# Training checkpoints written before RNG states became tensors hold numpy's MT19937 key
# array (uint32); these are exactly the globals one such array needs, resolved to the
# restricted reconstructors of safe_pickle. Nothing else beyond torch's own allow-list loads.
_LEGACY_RNG_GLOBALS = [
    *((fn, f"{module}.{name}") for (module, name), fn in safe_pickle.ALLOWED_GLOBALS.items()
      if name == "_reconstruct" or (module, name) in (("numpy", "ndarray"), ("numpy", "dtype"))),
    type(np.dtype(np.uint32)),  # what numpy.dtype returns; torch builds only allow-listed types
]


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says it all
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; older: no legacy files
        with allow(_LEGACY_RNG_GLOBALS) if allow else contextlib.nullcontext():
            return torch.load(path, map_location=map_location, weights_only=True)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint without executing anything from it; any problem is a
    one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        ckpt = _torch_load(path, map_location)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler refused something: a foreign global (maybe a payload),
        # or an opcode torch.save never writes (a plain pickle).
        found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(e))
        if found is None:
            raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated, or not a torch.save file "
                                  "(refused without loading it)") from None
        raise CheckpointError(f"{str(path)!r} is not a dcgan-features checkpoint (it names {found.group(1) or found.group(2)}, "
                              "which a checkpoint never contains); refused without loading it") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, TypeError, KeyError,
            AttributeError, IndexError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a dcgan-features checkpoint")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"checkpoint {str(path)!r} has a non-integer format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {version}; "
                              f"this package reads up to {FORMAT_VERSION}: upgrade dcgan-features")
    if not isinstance(ckpt.get("arch"), str):
        raise CheckpointError(f"checkpoint {str(path)!r} names no architecture")
    get_arch(ckpt["arch"])  # unknown architecture -> UserError with the list
    return ckpt


def models_from_payload(ckpt: dict, path: str = "<checkpoint>") -> tuple[Generator, Discriminator]:
    """Build G and D for a loaded checkpoint and load its weights (CPU, fp32)."""
    G, D = get_arch(ckpt["arch"]).build(ckpt["width"], nz=ckpt["nz"], init=False)
    for name, model in (("G", G), ("D", D)):
        try:
            model.load_state_dict(ckpt[name])
        except (RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint {path!r}: its {name} does not fit architecture "
                                  f"{ckpt['arch']} width {ckpt['width']} ({first})") from None
    for name, model in (("G", G), ("D", D)):
        bad = next((k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad is not None:
            raise CheckpointError(f"checkpoint {path!r}: {name}'s {bad} holds NaN or infinite weights "
                                  "(a diverged run?); use an earlier checkpoint")
    if ckpt.get("bn_eps") is not None:
        # eps is not in a state dict; imported Theano weights were trained with 1e-8
        for m in (*G.modules(), *D.modules()):
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = float(ckpt["bn_eps"])
    return G, D


def load_models(path: str | os.PathLike) -> tuple[Generator, Discriminator, dict]:
    """Load a checkpoint file and return (G, D, payload)."""
    ckpt = load(path)
    G, D = models_from_payload(ckpt, str(path))
    return G, D, ckpt


def trained_on(ckpt: dict) -> str:
    """The dataset a checkpoint's weights were trained on.

    Older files lack the key: a training checkpoint's config names its dataset, and an
    imported one is the authors' model of its architecture.

    >>> trained_on({"config": {"dataset": "digits"}}), trained_on({"imported": True, "arch": "svhn32"})
    ('digits', 'svhn')
    """
    if ckpt.get("trained_on"):
        return str(ckpt["trained_on"])
    if ckpt.get("imported"):
        return AUTHORS_TRAINED_ON.get(ckpt.get("arch", ""), "unknown")
    return str((ckpt.get("config") or {}).get("dataset") or "unknown")


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed; identifies the model behind a feature file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
