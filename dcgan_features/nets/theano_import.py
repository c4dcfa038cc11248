"""Import the authors' released Theano DCGAN weights (Newmu/dcgan_code) as a checkpoint.

The authors saved each network with ``joblib.dump(params, "<epoch>_gen_params.jl")``:
the ``.jl`` pickle only lists the arrays, which sit beside it as
``<epoch>_gen_params.jl_01.npy``, ``_02.npy``, ... in the order the model function takes
them. For ``svhn32`` that order is G: ``w g b w2 g2 b2 w3 g3 b3 wx`` and D:
``w w2 g2 b2 w3 g3 b3 wy``; ``imagenet32`` has the same pattern with six conv layers.

That order is also the order in which our modules hold their parameters, so the
conversion walks the torch modules and consumes one file per tensor:

* ``Linear``: Theano computes ``T.dot(x, w)`` with ``w`` of shape (in, out); torch
  stores (out, in): transpose.
* ``Conv2d``: ``dnn_conv`` defaults to ``conv_mode='conv'``, a true convolution, while
  torch cross-correlates: flip both spatial axes.
* ``ConvTranspose2d``: ``lib/ops.deconv`` is ``GpuDnnConvGradI`` of that same true
  convolution, i.e. its adjoint. torch's transposed conv is the adjoint of its
  cross-correlation, and the weight layouts agree (channels of the deconv's input
  first): flip both spatial axes. Output size ``input * stride`` is torch's
  ``output_padding = stride - 1``.
* BatchNorm: ``g``/``b`` are the affine weight and bias; Theano's ``batchnorm`` uses
  eps 1e-8 and batch statistics, so no running statistics exist. The checkpoint holds
  reset ones (mean 0, var 1, ``num_batches_tracked`` 0), ``imported=True`` and
  ``bn_eps=1e-8``; users recompute statistics or use batch statistics.

>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> write_random_params(d, "svhn32", width=2, epoch=5)   # same layout, random arrays
>>> available_epochs(d)
[5]
>>> G, D, info = convert_folder(d, "svhn32")
>>> info.width, info.nz, len(info.gen_files), len(info.discrim_files)
(2, 100, 10, 8)
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .architectures import ARCHITECTURES, Discriminator, Generator, get_arch
from .checkpoint import AUTHORS_TRAINED_ON
from ..core.errors import UserError

THEANO_BN_EPS = 1e-8
ARCHES = tuple(name for name, spec in ARCHITECTURES.items() if spec.theano_release)  # both end in linear layers
KINDS = {"G": "gen", "D": "discrim"}


@dataclass
class ImportInfo:
    """Where the arrays came from; stored as the checkpoint's ``config``."""

    source_dir: str
    arch: str
    epoch: int
    width: int
    nz: int
    gen_files: list[str] = field(default_factory=list)
    discrim_files: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)

    def as_config(self) -> dict:
        return {"source": "Newmu/dcgan_code (Theano)", "source_dir": self.source_dir, "arch": self.arch,
                "epoch": self.epoch, "width": self.width, "nz": self.nz, "gen_files": self.gen_files,
                "discrim_files": self.discrim_files, "sha256": self.sha256, "bn_eps": THEANO_BN_EPS,
                "bn": "no running statistics (Theano used batch statistics)"}


# ---------------------------------------------------------------------- file layout


def _prefix(epoch: int, kind: str) -> str:
    return f"{epoch}_{kind}_params.jl"


def available_epochs(folder: str | Path) -> list[int]:
    """Epochs for which both ``<epoch>_gen_params.jl_01.npy`` and the D file exist."""
    folder = Path(folder)
    found = {kind: {int(m.group(1)) for p in folder.glob(f"*_{kind}_params.jl_01.npy")
                    if (m := re.fullmatch(rf"(\d+)_{kind}_params\.jl_01\.npy", p.name))}
             for kind in KINDS.values()}
    return sorted(found["gen"] & found["discrim"])


def _choose_epoch(folder: Path, epoch: int | None) -> int:
    if not folder.is_dir():
        raise UserError(f"weights folder {str(folder)!r} not found")
    epochs = available_epochs(folder)
    if not epochs:
        raise UserError(f"no <epoch>_gen_params.jl_01.npy with a matching <epoch>_discrim_params.jl_01.npy "
                        f"in {str(folder)!r}")
    if epoch is None:
        return epochs[-1]
    if epoch not in epochs:
        raise UserError(f"epoch {epoch} not in {str(folder)!r}; available epochs: {', '.join(map(str, epochs))}")
    return epoch


class _Listed:
    """Stands in for joblib's ``NDArrayWrapper``: keeps only the listed file name."""

    filename = ""

    def __setstate__(self, state: dict) -> None:
        name = state.get("filename", "")
        self.filename = name.decode() if isinstance(name, bytes) else str(name)


class _ListingUnpickler(pickle.Unpickler):
    # The .jl is a Python 2 pickle of joblib objects; we only want the file names, so
    # every class it names maps to an inert stand-in and nothing else can be built.
    def find_class(self, module: str, name: str):
        if name == "NDArrayWrapper":
            return _Listed
        if (module, name) == ("numpy", "ndarray"):
            return _Listed
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")


def _listed_files(jl: Path) -> list[str] | None:
    """File names in a ``.jl`` listing, or None when there is no listing."""
    if not jl.is_file():
        return None
    try:
        with open(jl, "rb") as f:
            items = _ListingUnpickler(f, encoding="latin1").load()
        names = [it.filename for it in items]
    except Exception as e:  # any malformed listing is the user's file problem, not a bug
        raise UserError(f"{jl} is not a joblib listing of .npy files ({type(e).__name__}); "
                        f"delete it to read the _NN.npy files in order") from None
    if not all(names):
        raise UserError(f"{jl} lists an entry without a file name")
    return names


def _file_names(folder: Path, epoch: int, kind: str, n_expected: int, arch: str) -> list[Path]:
    prefix = _prefix(epoch, kind)
    listed = _listed_files(folder / prefix)
    present = sorted(p.name for p in folder.glob(f"{prefix}_*.npy"))
    names = listed if listed is not None else [f"{prefix}_{i:02d}.npy" for i in range(1, n_expected + 1)]
    what = f"the {arch} {'generator' if kind == 'gen' else 'discriminator'}"
    if len(names) != n_expected or (listed is None and len(present) > n_expected):
        n = len(names) if listed is not None else len(present)
        source = f"{folder / prefix} lists" if listed is not None else f"{folder} has"
        raise UserError(f"{source} {n} arrays for epoch {epoch}, but {what} has {n_expected}; "
                        f"is --arch {arch} right?")
    paths = [folder / n for n in names]
    for p in paths:
        if not p.is_file():
            raise UserError(f"missing file {p} (array {paths.index(p) + 1} of {n_expected} of {what})")
    return paths


def _load_array(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npy array ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if arr.dtype.kind != "f":
        raise UserError(f"{path} holds {arr.dtype} values, expected floating point weights")
    if not np.isfinite(arr).all():
        raise UserError(f"{path} contains NaN or infinite values")
    return arr


# --------------------------------------------------------------------- the mapping


def _slots(model: nn.Module, tag: str) -> list[tuple[str, nn.Module, str]]:
    """(theano name, module, torch attribute) for every tensor, in the authors' order."""
    slots, layer = [], 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            layer += 1
            slots.append(("w" if layer == 1 else f"w{layer}", m, "weight"))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            suffix = "" if layer == 1 else str(layer)
            slots += [(f"g{suffix}", m, "weight"), (f"b{suffix}", m, "bias")]
    # the authors call the output layer wx (G, to pixels) or wy (D, to the label)
    slots[-1] = (f"w{tag}",) + slots[-1][1:]
    return slots


def _theano_shape(m: nn.Module, attr: str) -> tuple[int, ...]:
    shape = tuple(getattr(m, attr).shape)
    return shape[::-1] if isinstance(m, nn.Linear) else shape


def _to_torch(m: nn.Module, arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if isinstance(m, nn.Linear):
        return t.t().contiguous()  # T.dot(x, w): (in, out) -> torch's (out, in)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        return t.flip(-2, -1).contiguous()  # true convolution -> cross-correlation
    return t


def _fill(model: nn.Module, tag: str, paths: list[Path]) -> None:
    slots = _slots(model, tag)
    assert len(slots) == len(paths), "file count is checked before"
    for (name, m, attr), path in zip(slots, paths):
        arr = _load_array(path)
        want = _theano_shape(m, attr)
        if tuple(arr.shape) != want:
            raise UserError(f"{path} ({name}): expected shape {want}, found {tuple(arr.shape)}")
        with torch.no_grad():
            getattr(m, attr).copy_(_to_torch(m, arr))
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.eps = THEANO_BN_EPS
            m.reset_running_stats()


def _n_tensors(arch: str) -> dict[str, int]:
    with torch.device("meta"):
        G, D = get_arch(arch).build(1, init=False)
    return {"G": len(_slots(G, "x")), "D": len(_slots(D, "y"))}


def _first_dims(path: Path, ndim: int) -> tuple[int, ...]:
    shape = tuple(_load_array(path).shape)
    if len(shape) != ndim:
        raise UserError(f"{path}: expected a {ndim}-d array, found shape {shape}")
    return shape


def convert_folder(folder: str | Path, arch: str, epoch: int | None = None
                   ) -> tuple[Generator, Discriminator, ImportInfo]:
    """Read, check and map one epoch's arrays; width and nz come from the files."""
    if arch not in ARCHES:
        raise UserError(f"--arch {arch!r} has no released Theano weights; choose one of {', '.join(ARCHES)}")
    folder = Path(folder)
    epoch = _choose_epoch(folder, epoch)
    counts = _n_tensors(arch)
    g_paths = _file_names(folder, epoch, "gen", counts["G"], arch)
    d_paths = _file_names(folder, epoch, "discrim", counts["D"], arch)
    # width = channels of D's first conv (w: (width, 3, k, k)); nz = rows of G's w (nz, units)
    width = _first_dims(d_paths[0], 4)[0]
    nz = _first_dims(g_paths[0], 2)[0]
    G, D = get_arch(arch).build(width, nz=nz, init=False)
    _fill(G, "x", g_paths)
    _fill(D, "y", d_paths)
    info = ImportInfo(str(folder.resolve()), arch, epoch, width, nz, [p.name for p in g_paths],
                      [p.name for p in d_paths], {p.name: _sha256(p) for p in g_paths + d_paths})
    return G, D, info


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_theano(folder: str | Path, arch: str, out: str | Path, epoch: int | None = None) -> ImportInfo:
    """Convert the arrays in ``folder`` and write a normal checkpoint (``imported=True``) to ``out``."""
    from . import checkpoint

    G, D, info = convert_folder(folder, arch, epoch)
    payload = checkpoint.make_payload(arch, info.width, G, D, nz=info.nz, imported=True,
                                      config=info.as_config(), bn_eps=THEANO_BN_EPS,
                                      trained_on=AUTHORS_TRAINED_ON[arch])
    checkpoint.save(out, payload)
    return info


# ----------------------------------------------------------------- writing the layout


def write_random_params(folder: str | Path, arch: str, width: int, epoch: int = 1, seed: int = 0,
                        nz: int | None = None, listing: bool = True) -> None:
    """Write random arrays in the authors' file layout (tests, and users checking a setup)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    with torch.device("meta"):
        G, D = get_arch(arch).build(width, nz=nz, init=False)
    for model, tag, kind in ((G, "x", "gen"), (D, "y", "discrim")):
        names = []
        for i, (name, m, attr) in enumerate(_slots(model, tag), start=1):
            shape = _theano_shape(m, attr)
            arr = (1.0 + 0.1 * rng.standard_normal(shape) if name.startswith("g")
                   else 0.1 * rng.standard_normal(shape)).astype(np.float32)
            names.append(f"{_prefix(epoch, kind)}_{i:02d}.npy")
            np.save(folder / names[-1], arr)
        if listing:
            (folder / _prefix(epoch, kind)).write_bytes(joblib_listing(names))


def joblib_listing(names: list[str]) -> bytes:
    """The bytes of a Python 2 joblib ``.jl`` listing of ``names``, as the authors' files."""
    out = b"\x80\x02](" + b"".join(
        b"csklearn.externals.joblib.numpy_pickle\nNDArrayWrapper\n)\x81}("
        b"U\nallow_mmap\x88U\x08subclasscnumpy\nndarray\nU\x08filename"
        + b"U" + bytes([len(n)]) + n.encode() + b"ub" for n in names)
    return out + b"e."
