"""The chain of one ``reproduce`` run: model -> features -> probes -> results.csv -> report.html.

:class:`Chain` turns a :class:`~.config.ReproduceConfig` into :class:`~.stages.Stage` s:

1. ``model``: train (run folder ``train/``), import the authors' Theano files
   (``model/imported.pt``), or take a checkpoint (the given file, or the packaged one);
2. ``extract:trained``, ``extract:random``, ``extract:pixels``: every D block, 4x4
   max-pooled, BN re-estimated on train, of the trained D and of a random D of the same
   architecture and width, and the raw pixels (``features/*.h5``, through the feature
   sources of ``extract --model``);
3. ``probe:pixels``, ``probe:random``, ``probe:trained`` (and ``probe:blocks``): the
   protocol's probes on each feature set (``probes/*.json``);

then writes ``results.csv`` (the columns of results/accuracy.csv, plus the paper's rows for
the protocol) and ``report.html`` from the stage records, so a rerun that recomputes
nothing writes the same table. Every step is the code the single commands run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from ..core.errors import DatasetError
from .config import IMAGE_SIZE, ModelSource, ReproduceConfig, check_input_size, resolve
from .stages import Decision, Stage, StageBook, plan

FEATURE_SETS = {"pixels": "pixels", "random": "random D", "trained": "trained D"}


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _q(value) -> str:
    import shlex

    return shlex.quote(str(value))


class Chain:
    """The stages of one run folder, built from a config; :meth:`run` executes them."""

    def __init__(self, cfg: ReproduceConfig, log: Callable[[str], None] = lambda m: None):
        from ..probes.linear import check_Cs
        from ..probes.protocols import get_protocol

        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.book = StageBook(self.out)
        self.source: ModelSource = resolve(cfg)
        self.protocol = get_protocol(cfg.protocol, val_size=cfg.val_size, labels_per_class=cfg.labels_per_class,
                                     draws=cfg.draws)
        self.grid = tuple(float(c) for c in check_Cs(cfg.c_grid if cfg.c_grid is not None else self.protocol.c_grid))
        self.model = self._describe_model()
        if cfg.look:
            from .look_stages import check_look

            check_look(self)
        self._data: dict | None = None

    # ------------------------------------------------------------------ the model

    def _describe_model(self) -> dict:
        """arch, width, trained_on, identity and checkpoint path of the trained D, known before it exists."""
        from ..data.fingerprint import data_fingerprint

        src = self.source
        if src.kind == "train":
            return {"arch": src.arch, "width": src.width, "trained_on": src.train_dataset,
                    "checkpoint": str(self.out / "train" / "checkpoints" / "last.pt"),
                    "identity": {"source": "train", "dataset": src.train_dataset,
                                 "data_dir": _abs(src.train_data_dir or self.cfg.data_dir),
                                 # the data itself, not only its folder: a changed dataset retrains
                                 "data": data_fingerprint(src.train_dataset, src.train_data_dir or self.cfg.data_dir),
                                 "arch": src.arch,
                                 "width": src.width, "epochs": src.epochs, "batch_size": src.batch_size,
                                 "seed": self.cfg.model_seed, **self._limit_setting()}}
        if src.kind == "import-theano":
            from ..nets.checkpoint import AUTHORS_TRAINED_ON
            from ..nets.theano_import import convert_folder

            _, _, info = convert_folder(src.path, src.arch)
            return {"arch": src.arch, "width": info.width, "trained_on": AUTHORS_TRAINED_ON[src.arch],
                    "checkpoint": str(self.out / "model" / "imported.pt"),
                    "identity": {"source": "import-theano", "folder": src.path, "arch": src.arch,
                                 "epoch": info.epoch, "sha256": info.sha256}}
        from ..nets import checkpoint
        from ..nets.architectures import get_arch

        ckpt = checkpoint.load(src.path)
        what = f"checkpoint {src.path}" if src.kind == "checkpoint" else f"the packaged model {Path(src.path).name}"
        check_input_size(ckpt["arch"], get_arch(ckpt["arch"]).image_size, self.cfg.protocol,
                         f"{what} ({ckpt['arch']})")
        return {"arch": ckpt["arch"], "width": int(ckpt["width"]), "trained_on": checkpoint.trained_on(ckpt),
                "checkpoint": src.path,
                "identity": {"source": src.kind, "path": src.path if src.kind == "checkpoint" else Path(src.path).name,
                             "sha256": checkpoint.sha256(src.path)}}

    def _limit_setting(self) -> dict:
        """``{"limit": N}`` in a stage's settings when ``--limit`` is given (nothing otherwise: old runs stay valid)."""
        return {} if self.cfg.limit is None else {"limit": self.cfg.limit}

    def _model_stage(self) -> Stage:
        src, m, out = self.source, self.model, self.out
        if src.kind == "train":
            data_dir = src.train_data_dir or self.cfg.data_dir
            cmd = (f"dcgan-features train --dataset {src.train_dataset}"
                   + (f" --data-dir {_q(data_dir)}" if data_dir else "")
                   + f" --arch {src.arch} --width {src.width} --epochs {src.epochs} --batch-size {src.batch_size}"
                   f" --seed {self.cfg.model_seed} --device {self.cfg.device} --out {_q(out / 'train')}"
                   + (f"  # on the first {self.cfg.limit} train images (reproduce --limit)" if self.cfg.limit else ""))
            return Stage("model", m["identity"], ["train/checkpoints/last.pt"], self._train, command=cmd,
                         title=f"train {src.arch} width {src.width} on {src.train_dataset}{_split_note(src.train_dataset)}, "
                               f"{src.epochs} epochs")
        if src.kind == "import-theano":
            cmd = f"dcgan-features import-theano {_q(src.path)} --arch {src.arch} --out {_q(m['checkpoint'])}"
            return Stage("model", m["identity"], ["model/imported.pt", "model/samples.png"], self._import,
                         command=cmd, title=f"import the authors' {src.arch} Theano weights")
        cmd = f"dcgan-features sample {_q(src.path)} --n 64 --seed 0 --out {_q(out / 'model' / 'samples.png')}"
        title = ("the checkpoint " + src.path if src.kind == "checkpoint"
                 else f"the packaged {m['arch']} model ({Path(src.path).name})")
        return Stage("model", m["identity"], ["model/samples.png"], self._samples_only, command=cmd, title=title)

    def _train(self, stage: Stage, how: str) -> dict:
        from ..train.loop import TrainConfig, train

        src, folder = self.source, self.out / "train"
        if how == "compute" and folder.exists():
            shutil.rmtree(folder)  # another model's run: train from scratch
        resume = how == "resume" and (folder / "checkpoints" / "last.pt").is_file()
        with self._train_data_hints():
            images = None
            if self.cfg.limit is not None:  # --limit: the first N training images, passed to train() as they are
                from ..data.registry import load
                from ..nets.architectures import get_arch

                images = load(src.train_dataset, "train", data_dir=src.train_data_dir or self.cfg.data_dir,
                              image_size=get_arch(src.arch).image_size).images[:self.cfg.limit]
            res = train(TrainConfig(dataset=src.train_dataset, arch=src.arch, width=src.width, epochs=src.epochs,
                                    batch_size=src.batch_size, data_dir=src.train_data_dir or self.cfg.data_dir,
                                    seed=self.cfg.model_seed, device=self.cfg.device, out=str(folder), resume=resume,
                                    threads=self.cfg.threads), images=images)
        return {"steps": res.step, "epochs": res.epoch, "img_per_s": res.img_per_s, "device": self._device_name(),
                "resumed": resume}

    @contextlib.contextmanager
    def _train_data_hints(self):
        """The training data's folder is ``--train-data-dir`` when it is not the probed dataset:
        a hint to pass ``--data-dir`` would move the probed data instead."""
        try:
            yield
        except DatasetError as e:
            if self.source.train_dataset == self.cfg.protocol:
                raise
            flag = "--train-data-dir" + ("" if self.cfg.train_dataset else
                                         f" (with --train-dataset {self.source.train_dataset})")
            raise DatasetError(str(e).replace("--data-dir", flag)) from None

    def _import(self, stage: Stage, how: str) -> dict:
        from ..nets.theano_import import import_theano

        (self.out / "model").mkdir(parents=True, exist_ok=True)
        info = import_theano(self.source.path, self.source.arch, self.model["checkpoint"])
        return {**self._samples_only(stage, how), "epoch": info.epoch}

    def _samples_only(self, stage: Stage, how: str) -> dict:
        """The model's sample grid (64 samples, seed 0) for the report."""
        from ..look import generate

        (self.out / "model").mkdir(parents=True, exist_ok=True)
        L = generate.load_generator(self.model["checkpoint"], device=self.cfg.device)
        _, images = generate.sample(L.G, L.spec, 64, 0, nz=L.nz)
        generate.save_png(images, self.out / "model" / "samples.png", 8)
        return {"device": self._device_name(), "bn": L.bn}

    # --------------------------------------------------------------- the features

    def data(self) -> dict:
        """The protocol's train and test splits at 32x32, loaded once per process."""
        from ..data.registry import load

        if self._data is None:
            p = self.protocol
            self._data = {s: load(self.cfg.protocol, s, data_dir=self.cfg.data_dir, image_size=IMAGE_SIZE)
                          for s in (p.train_split, p.test_split)}
            if self.cfg.limit is not None:  # --limit N: the first N images of each split
                import dataclasses

                self._data = {s: dataclasses.replace(d, images=d.images[:self.cfg.limit], labels=d.labels[:self.cfg.limit])
                              for s, d in self._data.items()}
        return self._data

    def _extract_config(self):
        """The protocol's extraction settings (the paper's BN, dtype and TF32 where it has them)."""
        from ..extract.run import extract_config

        p = self.protocol
        return extract_config(self.cfg.protocol, splits=(p.train_split, p.test_split), device=self.cfg.device,
                              data_dir=self.cfg.data_dir, limit=self.cfg.limit)

    def _extract_settings(self) -> dict:
        import dataclasses

        from ..data.fingerprint import data_fingerprint

        ecfg = dataclasses.asdict(self._extract_config())
        for k in ("device", "overwrite", "data_dir", "threads"):  # where it runs is not what it computes
            ecfg.pop(k)
        return {"dataset": self.cfg.protocol, "data_dir": _abs(self.cfg.data_dir), "extract": ecfg,
                "data": data_fingerprint(self.cfg.protocol, self.cfg.data_dir)}  # changed data: extract again

    def _extract_stages(self, model_fp: str) -> list[Stage]:
        """The trained D, a random D of its architecture and width, and the raw pixels, each to HDF5."""
        m, cfg, out = self.model, self.cfg, self.out
        common = (f" --dataset {cfg.protocol}" + (f" --data-dir {_q(cfg.data_dir)}" if cfg.data_dir else "")
                  + f" --splits {self.protocol.train_split},{self.protocol.test_split} --device {cfg.device}"
                  + (f" --limit {cfg.limit}" if cfg.limit is not None else ""))
        settings = self._extract_settings()
        random = {"arch": m["arch"], "width": m["width"], "seed": cfg.model_seed}
        made = {  # which -> (what determines the source, after, --model options, title)
            "trained": ({"model": model_fp}, ("model",), f"--model checkpoint:{_q(m['checkpoint'])}",
                        f"extract every D block of the trained {m['arch']}"),
            "random": ({"random_init": random}, (), f"--model random:{m['arch']} --width {m['width']} --seed {cfg.model_seed}",
                       f"extract every D block of a random {m['arch']} width {m['width']}"),
            "pixels": ({"pixels": {"image_size": IMAGE_SIZE}}, (), f"--model pixels --image-size {IMAGE_SIZE}",
                       f"the raw pixels (the model's 3x{IMAGE_SIZE}x{IMAGE_SIZE} input in [-1, 1]) to HDF5"),
        }
        return [Stage(f"extract:{which}", {**source, **settings}, [f"features/{which}.h5"],
                      self._extract_action(which), after=after, title=title,
                      command=f"dcgan-features extract {opts}{common} --out {_q(out / 'features' / f'{which}.h5')}")
                for which, (source, after, opts, title) in made.items()]

    def _source(self, which: str):
        from ..extract.sources import SourceOptions, from_spec
        from ..extract.sources.discriminator import checkpoint_model, random_init_model

        m = self.model
        if which == "trained":
            return checkpoint_model(m["checkpoint"])
        if which == "random":
            return random_init_model(m["arch"], m["width"], self.cfg.model_seed)
        return from_spec("pixels", SourceOptions(image_size=IMAGE_SIZE))

    def _extract_action(self, which: str) -> Callable[[Stage, str], dict]:
        def action(stage: Stage, how: str) -> dict:
            from ..extract.run import extract
            from ..extract.store import partial_path

            path = self.out / "features" / f"{which}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            if how == "compute":  # made from another model or settings: start over
                path.unlink(missing_ok=True)
                partial_path(path).unlink(missing_ok=True)
            res = extract(self._source(which), path, self._extract_config(), data=self.data(), log=self.log,
                          progress=True)
            return {"rows": res["rows"], "images_per_s": res["images_per_s"], "device": self._device_name(),
                    "state": res["state"], "threads": res.get("threads")}
        return action

    # ------------------------------------------------------------------ the probes

    def _probe_settings(self) -> dict:
        import dataclasses

        return {"protocol": dataclasses.asdict(self.protocol), "C": list(self.grid), "probes": list(self.cfg.probes),
                "seed": self.cfg.seed}

    def _probe_command(self, features: str) -> str:
        cfg, p = self.cfg, self.protocol
        opts = "".join(f" --probe {x}" for x in cfg.probes) + f" --C {','.join(f'{c:g}' for c in self.grid)}"
        for flag, v in (("--val-size", cfg.val_size), ("--labels-per-class", cfg.labels_per_class),
                        ("--draws", cfg.draws)):
            opts += f" {flag} {v}" if v is not None else ""
        opts += f" --seed {cfg.seed}" if cfg.seed is not None else ""
        return (f"dcgan-features probe {cfg.protocol} --features {_q(features)}{opts}"
                f" --device {cfg.device} --out {_q(self.out / 'probes')}")

    def _probe_stages(self, fps: dict[str, str]) -> list[Stage]:
        out, p = self.out, self.protocol
        stages = [Stage(f"probe:{which}", {"features": fps[which], **self._probe_settings()},
                        [f"probes/{which}.json"], self._probe_action(which), after=(f"extract:{which}",),
                        command=self._probe_command(str(out / "features" / f"{which}.h5")),
                        title=f"probe the {FEATURE_SETS[which]} features ({p.name} protocol)")
                  for which in ("pixels", "random", "trained")]
        if self.cfg.blocks:
            stages.append(Stage("probe:blocks", {"features": fps["trained"], **self._probe_settings()},
                                ["probes/blocks.json"], self._probe_action("blocks"), after=("extract:trained",),
                                command="(each block's columns of features/trained.h5, through the same probes)",
                                title="probe each block of the trained D alone"))
        return stages

    def _probe_action(self, which: str) -> Callable[[Stage, str], dict]:
        def action(stage: Stage, how: str) -> dict:
            from ..core.atomic import write_text_atomic

            records = self._probe(which)
            (self.out / "probes").mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "probes" / f"{which}.json", json.dumps(records, indent=1, default=str) + "\n")
            return {"records": len(records), "device": self._device_name()}
        return action

    def _probe(self, which: str) -> list[dict]:
        from ..probes.protocols import Features, from_file, run_protocol
        from ..extract.store import FeatureFile

        cfg, p, m = self.cfg, self.protocol, self.model
        stamp = time.strftime("%Y-%m-%d")
        run = lambda feats: run_protocol(cfg.protocol, feats, cfg.probes, p, Cs=self.grid, seed=cfg.seed,  # noqa: E731
                                         device=cfg.device, log=self.log, threads=cfg.threads)

        limited = "" if cfg.limit is None else f"; --limit {cfg.limit}: the first {cfg.limit} images of each split"

        def label(records: list[dict], name: str, note: str, **extra) -> list[dict]:
            for r in records:
                r.update(features=name, note=note + limited, date=stamp, command=cfg.command, limit=cfg.limit,
                         **extra)
            return records

        with FeatureFile(self.out / "features" / f"{'trained' if which == 'blocks' else which}.h5") as ff:
            notes = f"all blocks, bn {ff.meta.get('bn_mode')}, width {m['width']}"
            if which == "pixels":
                return label(run(from_file(ff, p, device=cfg.device)), "pixels",
                             f"raw input 3x{IMAGE_SIZE}x{IMAGE_SIZE} in [-1, 1]", architecture="", checkpoint="",
                             layers="pixels")
            if which == "random":
                return label(run(from_file(ff, p, device=cfg.device)), "random D", notes,
                             checkpoint=f"random-init seed {cfg.model_seed}")
            if which == "trained":
                return label(run(from_file(ff, p, device=cfg.device)), "trained D", notes)
            records, lo = [], 0
            sha = str(ff.meta.get("checkpoint_sha256", ""))
            base = {"dataset": cfg.protocol, "trained_on": ff.meta.get("trained_on", ""), "features": "trained D",
                    "architecture": m["arch"], "checkpoint": sha[:12]}
            for layer, dim in zip(ff.meta["layers"], ff.meta["layer_dims"]):
                one = Features(block_rows(ff, p.train_split, lo, lo + dim), block_rows(ff, p.test_split, lo, lo + dim),
                               {**base, "layers": layer, "dim": dim})
                records += label(run(one), "trained D", f"block {layer} alone, bn {ff.meta.get('bn_mode')}, "
                                                         f"width {m['width']}")
                lo += dim
            return records

    # ------------------------------------------------------------------- the chain

    def stages(self) -> list[Stage]:
        model = self._model_stage()
        extract = self._extract_stages(model.fingerprint)
        look = []
        if self.cfg.look:  # optional: what the features respond to, and the memorisation check
            from .look_stages import look_stages

            look = look_stages(self, model.fingerprint)
        return [model, *extract, *self._probe_stages({s.name.split(":")[1]: s.fingerprint for s in extract}), *look]

    def plan(self) -> list[Decision]:
        return plan(self.stages(), self.book)

    def missing_inputs(self) -> dict[str, str]:
        """Stage name -> the one line saying which of its input data is not on disk (``--dry-run``)."""
        from ..data.registry import missing

        src, p, out = self.source, self.protocol, {}
        if src.kind == "train":
            try:
                with self._train_data_hints():
                    msg = missing(src.train_dataset, "train", src.train_data_dir or self.cfg.data_dir)
                    if msg:
                        raise DatasetError(msg)
            except DatasetError as e:
                out["model"] = str(e)
        msgs = [m for m in (missing(self.cfg.protocol, s, self.cfg.data_dir) for s in (p.train_split, p.test_split))
                if m]
        if msgs:
            out.update({f"extract:{which}": msgs[0] for which in FEATURE_SETS})
        return out

    def _device_name(self) -> str:
        from ..core.devices import device_name, resolve_device

        return device_name(resolve_device(self.cfg.device))

    def records(self) -> list[dict]:
        """Every probe record of the finished stages, in stage order."""
        out = []
        for s in self.stages():
            path = self.out / "probes" / f"{s.name.split(':', 1)[1]}.json" if s.name.startswith("probe:") else None
            if path is not None and path.is_file():
                out += json.loads(path.read_text())
        return out


def block_rows(ff, split: str, lo: int, hi: int):
    """The columns [lo, hi) of a feature-file split (one block's features), in memory as float16."""
    import torch

    from ..probes.rows import ArrayRows

    X = torch.empty((ff.n_rows(split), hi - lo), dtype=torch.float16)
    for s, x in ff.iter_chunks(split, device="cpu"):
        X[s:s + x.shape[0]] = x[:, lo:hi].to(torch.float16)
    return ArrayRows(X, ff.labels(split), split=split)


def _split_note(dataset: str) -> str:
    """`` (its unlabeled split)`` when a GAN trains on another split than train (STL-10)."""
    from ..data.registry import get_dataset

    split = get_dataset(dataset).gan_split
    return "" if split == "train" else f" (its {split} split)"
