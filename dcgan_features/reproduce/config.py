"""What one ``reproduce`` run is: the protocol, where its model comes from, and the settings.

:data:`SETUPS` holds the paper's model for each protocol (one registry entry each); the
CLI reads its defaults from there and from :class:`ReproduceConfig`, so every default
exists once. :func:`resolve` checks a config and turns it into the model source that the
stages run.

>>> src = resolve(ReproduceConfig("digits", out="runs/r"))
>>> src.kind, src.train_dataset, src.arch, src.width, src.epochs
('train', 'digits', 'dcgan32', 32, 30)
>>> resolve(ReproduceConfig("svhn", out="runs/s")).kind
'bundled'
>>> ReproduceConfig("fashion-mnist", out="runs/fm", epochs=2, c_grid=(1e-3, 0.01)).command
'dcgan-features reproduce fashion-mnist --out runs/fm --epochs 2 --C 0.001,0.01'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

PACKAGED = Path(__file__).resolve().parents[1] / "pretrained"  # checkpoints shipped with the package
IMAGE_SIZE = 32  # every protocol's images are probed at 32x32 (grayscale ones resized, DESIGN section 2)


@dataclass(frozen=True)
class PaperSetup:
    """The model a protocol uses when none is given: the paper's, or a small one where it has none."""

    protocol: str
    train_dataset: str
    arch: str
    width: int
    epochs: int = 25
    batch_size: int = 128
    bundled: str | None = None  # a checkpoint in PACKAGED used when no model option is given
    note: str = ""


SETUPS = {s.protocol: s for s in [
    PaperSetup("cifar10", "imagenet32", "imagenet32", 128,
               note="the paper's CIFAR-10 model: imagenet32 at width 128 trained on ImageNet-1k 32x32"),
    PaperSetup("svhn", "svhn", "svhn32", 64, bundled="svhn32_theano.pt",
               note="the authors' released SVHN model (Newmu/dcgan_code, MIT), converted from Theano"),
    PaperSetup("fashion-mnist", "fashion-mnist", "dcgan32", 32, epochs=2,
               note="no paper model; a small dcgan32 trained on Fashion-MNIST"),
    PaperSetup("stl10", "stl10", "dcgan32", 32, epochs=25,
               note="no paper model; a dcgan32 trained on STL-10's 100000 unlabeled images at 32x32 (the "
                    "benchmark's point: features learned without its labels), probed on its 10 folds"),
        # the quickstart's model: the smallest setting whose digits samples were recognisable here
    PaperSetup("digits", "digits", "dcgan32", 32, epochs=30, batch_size=64,
               note="no paper model; the quickstart's dcgan32 trained on digits"),
]}


@dataclass(frozen=True)
class ReproduceConfig:
    """Every setting of one ``reproduce`` run; None means the protocol's default (:data:`SETUPS`)."""

    protocol: str
    out: str = "runs/reproduce"
    # the model: exactly one of a checkpoint, the authors' Theano files, or training
    checkpoint: str | None = None
    import_theano: str | None = None
    train_dataset: str | None = None
    train_data_dir: str | None = None
    arch: str | None = None
    width: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None  # training and the random D: 0 when None; the probes: the protocol's (svhn 42)
    # data, device and the probe options the protocol lets change
    data_dir: str | None = None
    device: str = "auto"
    val_size: int | None = None
    labels_per_class: int | None = None
    draws: int | None = None
    c_grid: tuple[float, ...] | None = None
    probes: tuple[str, ...] = ("svm", "logreg")
    blocks: bool = False  # also probe each D block of the trained D alone
    look: bool = False  # also the look-inside stages: visualize (Fig. 5) and neighbours (memorisation)
    threads: int | None = None  # CPU threads of every stage; None: core.threads' policy or OMP_NUM_THREADS
    limit: int | None = None  # the first N images of each split (training data too): real data in minutes

    @property
    def model_seed(self) -> int:
        """The seed of training and of the random D."""
        return 0 if self.seed is None else self.seed

    @property
    def command(self) -> str:
        """The ``dcgan-features reproduce`` command line of this config (non-default settings only)."""
        import dataclasses
        import shlex

        parts = ["dcgan-features", "reproduce", self.protocol]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "protocol" or value == f.default:
                continue
            flag = "--" + {"c_grid": "C", "probes": "probe"}.get(f.name, f.name).replace("_", "-")
            if f.name == "probes":
                parts += [a for p in value for a in (flag, p)]
            elif f.name == "c_grid":
                parts += [flag, ",".join(f"{c:g}" for c in value)]
            elif value is True:
                parts.append(flag)
            else:
                parts += [flag, str(value)]
        return " ".join(shlex.quote(p) for p in parts)


@dataclass(frozen=True)
class ModelSource:
    """Where the trained D comes from, resolved: ``train``, ``checkpoint``, ``import-theano`` or ``bundled``."""

    kind: str
    path: str | None = None  # checkpoint file, Theano folder or packaged file
    train_dataset: str | None = None
    train_data_dir: str | None = None
    arch: str | None = None  # known up front for train and import-theano
    width: int | None = None
    epochs: int | None = None
    batch_size: int | None = None


TRAIN_ONLY = ("train_data_dir", "width", "epochs", "batch_size")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve(cfg: ReproduceConfig) -> ModelSource:
    """Check ``cfg`` and pick the model source; every conflict is a one-line UserError."""
    from ..probes.protocols import PROTOCOLS

    if cfg.protocol not in PROTOCOLS or cfg.protocol not in SETUPS:
        raise UserError(f"unknown protocol {cfg.protocol!r}; choose from {', '.join(SETUPS)}")
    setup = SETUPS[cfg.protocol]
    given = [f for f in ("checkpoint", "import_theano", "train_dataset") if getattr(cfg, f) is not None]
    if len(given) > 1:
        raise UserError(f"give one model source, not {' and '.join(map(_flag, given))}: a --checkpoint, "
                        f"the authors' --import-theano folder, or --train-dataset to train one")
    if cfg.train_data_dir is not None and cfg.train_dataset is None:
        raise UserError("--train-data-dir needs --train-dataset NAME (the dataset to train on); "
                        "--data-dir is where the probed data lives")
    kinds = {"checkpoint": "checkpoint", "import_theano": "import-theano", "train_dataset": "train"}
    kind = kinds[given[0]] if given else ("bundled" if setup.bundled else "train")
    if kind != "train":
        extra = [_flag(f) for f in TRAIN_ONLY + (("arch",) if kind != "import-theano" else ())
                 if getattr(cfg, f) is not None]
        if extra:
            why = "the checkpoint fixes its own architecture" if kind != "import-theano" else "it only applies to training"
            raise UserError(f"{', '.join(extra)} only apply when training (--train-dataset); {why}")
    if kind == "train":
        from ..nets.architectures import get_arch
        from ..data.registry import get_dataset

        arch = cfg.arch or setup.arch
        spec = get_arch(arch)
        check_input_size(arch, spec.image_size, cfg.protocol, f"--arch {arch}")
        dataset = cfg.train_dataset or setup.train_dataset
        get_dataset(dataset)
        own = cfg.arch is None or cfg.arch == setup.arch  # the setup's width belongs to its architecture
        width = cfg.width if cfg.width is not None else (setup.width if own else spec.default_width)
        return ModelSource("train", None, dataset, cfg.train_data_dir, arch, width,
                           cfg.epochs if cfg.epochs is not None else setup.epochs,
                           cfg.batch_size if cfg.batch_size is not None else setup.batch_size)
    if kind == "import-theano":
        from ..nets.theano_import import ARCHES

        arch = cfg.arch or setup.arch
        if arch not in ARCHES:
            raise UserError(f"--import-theano reads the authors' {' or '.join(ARCHES)} files; pass --arch with one "
                            f"of them")
        return ModelSource("import-theano", str(Path(cfg.import_theano).resolve()), arch=arch)
    if kind == "checkpoint":
        if not Path(cfg.checkpoint).is_file():
            raise UserError(f"checkpoint {cfg.checkpoint!r} not found")
        return ModelSource("checkpoint", str(Path(cfg.checkpoint).resolve()))
    path = PACKAGED / setup.bundled
    if not path.is_file():
        raise UserError(f"the packaged model {path} is missing (a broken install?); reinstall dcgan-features "
                        f"or pass --checkpoint / --import-theano")
    return ModelSource("bundled", str(path))


def check_input_size(arch: str, size: int, protocol: str, what: str) -> None:
    """Refuse a model whose input is not the protocol's 32x32 images."""
    if size != IMAGE_SIZE:
        raise UserError(f"{what} takes {size}x{size} images, but the {protocol} protocol probes "
                        f"{IMAGE_SIZE}x{IMAGE_SIZE} ones; use a 32x32 architecture (imagenet32, svhn32, dcgan32)")
