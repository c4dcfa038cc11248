"""Dataset -> discriminator features -> HDF5, streamed, overlapped, resumable.

The pipeline behind ``dcgan-features extract``, the same for every feature source
(:mod:`dcgan_features.extract.sources`: our D, pixels, K-means, any nn.Module): load the dataset
splits, let the source prepare (re-estimate BatchNorm, fit K-means), then run fixed
batches through the source's extractor (hooks that pool inside the hook) while a
writer thread puts the previous batches into the :class:`~dcgan_features.extract.writer.FeatureWriter`.
On a GPU, features are copied into pinned host buffers asynchronously and the writer
waits on a CUDA event, so compute, the device-to-host copy and the disk overlap.

Batches are fixed by ``batch_size`` and always start at multiples of it, so a resumed
run recomputes exactly the batches an uninterrupted run computes (this matters for
``--bn batch``), and what the source prepared (BN statistics, a K-means dictionary) is
kept in the partial file.

>>> import tempfile, os
>>> out = os.path.join(tempfile.mkdtemp(), "f.h5")
>>> model = random_init_model("dcgan32", width=2, seed=0)
>>> cfg = ExtractConfig(dataset="synthetic", splits=("test",), limit=8, batch_size=4, bn="batch")
>>> extract(model, out, cfg)["rows"]
{'test': 8}
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.atomic import check_writable_dir
from ..core.devices import resolve_device
from ..core.errors import FeatureFileError, UserError
from ..core.locks import output_lock
from ..core.threads import TRAIN_SMALL_PARAMS, choose_threads, thread_scope
from ..core.memory import check_fits
from .parts import check_no_parts
from .writer import FeatureWriter
from .sources.base import FeatureSource, Plan, PrepareContext
from .sources.discriminator import Model, checkpoint_model, random_init_model, random_init_sha256  # noqa: F401
from .config import ExtractConfig, extract_config  # noqa: F401
from .store import DTYPES, FileMeta


# Our discriminators are sources like any other; their builders keep their old import path.
__all__ = ["ExtractConfig", "extract", "Model", "checkpoint_model", "random_init_model", "random_init_sha256"]


# ---------------------------------------------------------------------- writer thread


class _BackgroundWriter:
    """Takes finished batches from the compute loop and writes them on its own thread."""

    def __init__(self, writer: FeatureWriter, device: torch.device, rows: int, dim: int, dtype: torch.dtype,
                 on_commit: Callable[[int], None], depth: int = 3):
        self.writer, self.device, self.on_commit = writer, device, on_commit
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.free: queue.Queue = queue.Queue()
        if device.type == "cuda":  # pinned buffers make the device-to-host copy asynchronous
            for _ in range(depth + 1):
                self.free.put((torch.empty((rows, dim), dtype=dtype, pin_memory=True),
                               torch.empty((), dtype=torch.bool, pin_memory=True)))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="feature-writer", daemon=True)
        self.thread.start()

    def _blocking(self, fn, *args):
        while True:  # never wait forever on a thread that has died
            if self.error is not None:
                raise self.error
            try:
                return fn(*args, timeout=0.2)
            except (queue.Empty, queue.Full):
                continue

    def submit(self, split: str, lo: int, feats: torch.Tensor) -> None:
        finite = torch.isfinite(feats).all()
        if self.device.type == "cuda":
            buf, ok = self._blocking(self.free.get)
            host = buf[:feats.shape[0]]
            host.copy_(feats, non_blocking=True)
            ok.copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._blocking(self.q.put, ("rows", split, lo, host, ok, event, (buf, ok)))
        else:
            self._blocking(self.q.put, ("rows", split, lo, feats, finite, None, None))

    def complete(self, split: str) -> None:
        self._blocking(self.q.put, ("complete", split))

    def _run(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                if item[0] == "complete":
                    self.writer.complete(item[1])
                    continue
                _, split, lo, host, ok, event, buffers = item
                if event is not None:
                    event.synchronize()
                if not bool(ok):
                    raise _nonfinite(split, lo, host)
                self.writer.write(split, lo, host.numpy())
                self.writer.commit(split)
                if buffers is not None:
                    self.free.put(buffers)
                self.on_commit(host.shape[0])
        except BaseException as e:  # handed to the compute thread at its next submit/close
            self.error = e

    def close(self) -> None:
        if self.thread.is_alive():
            self._blocking(self.q.put, None)
            self.thread.join()
        if self.error is not None:
            raise self.error


def _nonfinite(split: str, lo: int, host: torch.Tensor) -> UserError:
    """The one line for non-finite features: float16 overflow (inf only) or a model that gives NaN.

    >>> str(_nonfinite("test", 4, torch.tensor([[1.0], [float("nan")]], dtype=torch.float16)))[:62]
    'the model gives NaN features at test row 5: its weights (a che'
    """
    row = int((~torch.isfinite(host.float())).any(1).nonzero()[0, 0])
    bad = lo + row
    if host.dtype == torch.float16 and not bool(torch.isnan(host[row]).any()):  # overflow makes inf, never NaN
        return UserError(f"feature of {split} row {bad} overflows float16 (|x| > 65504); extract with --dtype float32")
    what = "NaN" if bool(torch.isnan(host[row]).any()) else "infinite"
    return UserError(f"the model gives {what} features at {split} row {bad}: its weights (a checkpoint, --weights, "
                     f"a python: model's parameters or a K-means dictionary) hold NaN or inf, or training diverged")


# --------------------------------------------------------------------------- extract


def _disk_error(e: OSError, out: Path, writer: FeatureWriter | None) -> FeatureFileError:
    text = str(e)
    full = getattr(e, "errno", None) == 28 or "No space left" in text or "errno = 28" in text
    what = "disk full" if full else f"write failed ({text.splitlines()[0][:120] if text else type(e).__name__})"
    kept = ""
    if writer is not None and writer.partial.exists():
        kept = f"; the rows written so far are kept in {writer.partial}: free space and run the same command " \
               f"again to resume, or delete it"
    return FeatureFileError(f"{what} while writing features to {out}{kept}")


def extract(model: FeatureSource, out: str | os.PathLike, cfg: ExtractConfig, data: dict | None = None,
            log: Callable[[str], None] = lambda m: None, progress: bool = False) -> dict:
    """Write the features of ``cfg.splits`` to ``out``; resume a partial run; return a summary.

    ``model`` is any :class:`~dcgan_features.extract.sources.FeatureSource` (a D from
    :func:`checkpoint_model` or :func:`random_init_model`, ``pixels``, ``kmeans:K``, a
    torchvision or user model). ``data`` may hold already loaded
    :class:`~dcgan_features.data.registry.ImageSet` s by split name (benchmarks); otherwise they are
    loaded here. Summary keys: path, state (new, resume or done), rows (per split),
    seconds, images_per_s. ``out`` is locked for the whole run
    (:func:`~dcgan_features.core.locks.output_lock`): a second extraction to it is refused.
    One process; under ``torchrun`` every rank calls
    :func:`dcgan_features.extract.distributed.extract_sharded` instead (the CLI does).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("extract() is the single-process path: under torchrun call "
                        "dcgan_features.extract.distributed.extract_sharded on every rank")
    with output_lock(out):
        return _extract(model, Path(out), cfg, data, log, progress)


def _extract(model: FeatureSource, out: Path, cfg: ExtractConfig, data: dict | None, log: Callable[[str], None],
             progress: bool) -> dict:
    device = resolve_device(cfg.device)
    plan, images, labels, meta = _inputs(model, out, cfg, data, log)
    if plan.skipped:
        log(f"--layer all at {model.image_size}x{model.image_size}: {len(plan.layers)} layers; skipped "
            f"{len(plan.skipped)} narrower than --grid {cfg.grid}: {', '.join(plan.skipped)}")
    check_no_parts(out, world=1, overwrite=cfg.overwrite)
    splits = {s: (labels[s], np.arange(len(labels[s]), dtype=np.int64)) for s in cfg.splits}
    writer = FeatureWriter(out, meta, splits, resume_key=resume_key(cfg, plan), overwrite=cfg.overwrite, log=log)
    t0 = time.perf_counter()
    try:
        writer.open()
    except OSError as e:
        raise _disk_error(e, out, None) from None
    rows = {s: len(labels[s]) for s in cfg.splits}
    if writer.state == "done":
        return {"path": str(out), "state": "done", "rows": rows, "seconds": 0.0, "images_per_s": 0.0}
    size = model.work_size()
    threads = choose_threads(cfg.threads, size, TRAIN_SMALL_PARAMS, device.type)
    try:
        with _tf32(cfg.tf32), thread_scope(threads):
            return {**_run(model, plan, device, cfg, writer, images, rows, t0, log, progress), **threads.record()}
    except OSError as e:
        raise _disk_error(e, out, writer) from None
    finally:
        writer.close()


def resume_key(cfg: ExtractConfig, plan: Plan) -> dict:
    """The run settings a partial file must have been started with to be resumed."""
    key = {"batch_size": cfg.batch_size, "tf32": cfg.tf32}
    if plan.bn_mode == "authors":
        key.update(bn_holdout=cfg.bn_holdout, bn_seed=cfg.bn_seed, bn_batch_size=cfg.bn_batch_size)
    return key


def _inputs(model: FeatureSource, out: Path, cfg: ExtractConfig, data: dict | None, log=None):
    """Check the settings, load the splits (+ train when the source prepares on it), first
    ``limit`` rows; return the plan, images and labels by split, and the file's metadata."""
    from ..data.registry import load

    if cfg.dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.batch_size < 1 or (cfg.limit is not None and cfg.limit < 1):
        raise UserError("batch size and limit must be positive")
    plan = model.plan(cfg.layers, cfg.grid, cfg.bn)  # checks layers, grid and bn mode; installs nothing
    size = int(getattr(model, "image_size", None) or 32)
    # one batch as float32 input, twice (the input and its first activation are at least that), and
    # its feature rows: what a --batch-size (bounded at 65536) at a large --image-size asks for
    check_fits(cfg.batch_size * (2 * 4 * 3 * size * size + 4 * sum(plan.layer_dims)),
               f"a batch of {cfg.batch_size} images at {size}x{size}", "lower --batch-size")
    check_writable_dir(out.parent if str(out.parent) else ".")

    # (1) data: the requested splits (+ train when the source prepares on it), first `limit` rows
    data = dict(data or {})
    need = list(cfg.splits) + (["train"] if model.needs_train(plan) and "train" not in cfg.splits else [])
    for split in need:
        if split not in data:
            data[split] = load(cfg.dataset, split, data_dir=cfg.data_dir, image_size=model.image_size,
                               folder=cfg.folder_options(log, progress=log is not None),
                               limit=cfg.limit)
    images = {s: data[s].images[:cfg.limit] for s in need}
    labels = {s: data[s].labels[:cfg.limit].numpy() for s in need}

    # (2) the file: done already, resume, or new
    grid = cfg.grid if plan.grid is None else plan.grid
    classes, info, key = dataset_info(data, need, cfg.limit)
    meta = FileMeta(cfg.dataset, model.architecture, model.width, tuple(plan.layers), tuple(plan.layer_dims), grid,
                    plan.bn_mode, model.sha256, cfg.dtype, model.spec, model.trained_on, model.postprocess, classes, info, key)
    return plan, images, labels, meta


def dataset_info(data: dict, splits: list[str], limit: int | None) -> tuple[tuple[str, ...], dict, str]:
    """Class names, what the splits' protocol needs (:attr:`ImageSet.info`, a folder's drawn rows cut
    to ``limit``) and a fingerprint of it (empty when there is nothing)."""
    import hashlib
    import json

    classes = next((tuple(data[s].classes) for s in splits if getattr(data[s], "classes", None)), ())
    info: dict = {}
    for s in splits:
        for k, v in getattr(data[s], "info", {}).items():
            info[k] = v[:limit] if k.startswith("folder_rows_") and limit is not None else v
    if not info:
        return classes, info, ""
    h = hashlib.sha256(json.dumps({k: v for k, v in sorted(info.items()) if not isinstance(v, np.ndarray)},
                                  default=str).encode())
    for k in sorted(k for k, v in info.items() if isinstance(v, np.ndarray)):
        h.update(k.encode() + np.ascontiguousarray(v).tobytes())
    return classes, info, h.hexdigest()[:16]


@contextlib.contextmanager
def _tf32(allowed: bool):
    """TF32 for cuDNN convolutions and CUDA matmuls as asked, restored afterwards."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _authors_bn_batches(cfg: ExtractConfig, train: torch.Tensor, device: torch.device, log) -> Iterator:
    """``--bn authors``: the train rows the SVHN authors' validation split leaves (their
    RandomState(seed) shuffle, the first ``bn_holdout`` rows out), in that shuffled order,
    in batches of ``bn_batch_size`` (their 128)."""
    from ..probes.authors import validation_split

    _, rows = validation_split(train.shape[0], cfg.bn_holdout, cfg.bn_seed)
    rows = torch.from_numpy(rows).to(train.device)
    bs = cfg.bn_batch_size
    log(f"re-estimating BatchNorm statistics as the SVHN authors: {len(rows)} train images outside their "
        f"{cfg.bn_holdout} validation rows, shuffled (seed {cfg.bn_seed}), batches of {bs}, biased variance")
    for lo in range(0, len(rows), bs):
        yield train[rows[lo:lo + bs]].to(device, non_blocking=True)


def _run(model: FeatureSource, plan: Plan, device: torch.device, cfg: ExtractConfig, writer: FeatureWriter,
         images: dict, rows: dict, t0: float, log, progress: bool,
         prepare: Callable[[FeatureSource, Plan, PrepareContext], None] | None = None) -> dict:
    """Prepare the source, then write ``rows`` of ``images`` (every split of ``cfg.splits``) to
    ``writer``. ``prepare`` replaces ``model.prepare`` (a torchrun rank's, which shares the work)."""
    from ..core.progress import Progress

    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        images = {s: x.to(device) for s, x in images.items()}  # uint8: 150 MB for CIFAR-10
    bs = cfg.batch_size

    def batches(x: torch.Tensor, start: int = 0):
        for lo in range(start, x.shape[0], bs):
            yield x[lo:lo + bs].to(device, non_blocking=True)

    # (3) the source's own preparation (BN re-estimation, a K-means fit), kept for a resume
    bn_batches = (lambda: _authors_bn_batches(cfg, images["train"], device, log)) if plan.bn_mode == "authors" else None
    ctx = PrepareContext(images, device, lambda s: batches(images[s]), writer.saved_state, writer.save_state, log,
                         bn_batches, progress=progress)
    (prepare or (lambda m, p, c: m.prepare(p, c)))(model, plan, ctx)

    # (4) batches -> features -> writer thread; resume at the batch holding the first missing row
    done_rows = [0]
    total = sum(rows.values())
    saved = {s: writer.committed(s) for s in cfg.splits}
    starts = {s: rows[s] if writer.is_complete(s) else (saved[s] // bs) * bs for s in cfg.splits}
    skipped = sum(starts.values())
    if writer.state == "resume":
        log(f"resuming {writer.partial}: {sum(saved.values())} of {total} rows already written")
    bar = Progress(total, f"extract {Path(writer.path).name}", unit="img", initial=skipped,
                   mode="auto" if progress else False)

    def on_commit(n: int) -> None:
        done_rows[0] += n
        bar.update(n)

    out_dtype = getattr(torch, cfg.dtype)
    bw = _BackgroundWriter(writer, device, bs, plan.dim, out_dtype, on_commit)
    try:
        with model.extractor(plan, cfg.grid, out_dtype) as fx:
            for split in cfg.splits:
                if writer.is_complete(split):
                    continue
                for i, x in enumerate(batches(images[split], starts[split])):
                    bw.submit(split, starts[split] + i * bs, fx(x))
                bw.complete(split)
    finally:
        try:
            bw.close()
        finally:
            bar.close()
    writer.finish()
    seconds = time.perf_counter() - t0
    return {"path": str(writer.path), "state": writer.state, "rows": rows, "seconds": seconds,
            "images_per_s": done_rows[0] / seconds if seconds > 0 else 0.0, "computed": done_rows[0]}
