"""``torchrun ... -m dcgan_features.cli extract``: every rank extracts a share, one file results.

How ranks write: rank ``r`` of ``W`` takes a contiguous share of whole batches of every
split (:func:`~dcgan_features.core.distributed.share`) and writes it to its own part file
``<out>.part<r>of<W>.partial``, a :class:`~dcgan_features.extract.writer.FeatureWriter`
partial file, so kill -9 and a relaunch of the same command resume it exactly as a
single-process run resumes. Part files keep their ``/_resume`` group all their life (no
reader takes a file that has one) and never get a final name. When every rank's part is
complete, rank 0 copies the parts in rank order into ``<out>.partial`` and moves that onto
``<out>``, the single-process writer's own path, so the final name only ever holds a
whole file; then the parts are deleted. Part files, not writes into one file, because
HDF5 without MPI takes writes from one process only. The cost is one more copy of the
features on disk while rank 0 joins; the folder must be visible to every rank (one node or
a shared filesystem), which is checked at start.

Same file as one process: batches start at the same rows (shares are whole batches), so
every batch, and with ``--bn batch`` every batch statistic, is the one a single process
computes. The source's preparation is shared: with ``--bn recompute`` each rank measures the
BN statistics of its share of the train batches
(:func:`~dcgan_features.extract.hooks.batch_bn_stats`), the rows are gathered in rank (= batch)
order and every rank averages all of them in one fixed order, as one process does, before
any feature is written; anything else a source prepares (a K-means fit) runs on every rank
and rank 0's result is given to all. What was prepared is kept in every part for a resume,
and copied into the joined file as one process would keep it.

At start the ranks agree on the settings (the same flags, model, dataset sizes and output
path on every rank), the world size (at most the rows of the smallest split) and the
shared folder; any failure there, or later on one rank, stops every rank with one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import torch

from ..core.devices import DistContext, resolve_device
from ..core.distributed import LostRankError, agree, gather_rows, joined, share, stop_on_sigterm
from ..core.errors import FeatureFileError, UserError
from .parts import _parts_on_disk, check_no_parts, part_path
from .writer import FeatureWriter
from .store import RESUME, SOURCE, decode_attr, partial_path

JOIN_BLOCK_BYTES = 64 << 20  # rows copied per read while joining the parts


class _PartWriter(FeatureWriter):
    """A rank's share: a partial file for life. ``finish`` keeps it partial; the join names the file."""

    def finish(self) -> Path:
        self._f.flush()
        return self.partial

    def save_state(self, name: str, tensors, attrs=None, keep: bool = False) -> None:
        for parent in (self._f[RESUME], self._f.get(SOURCE)):  # replace what an earlier run saved
            if parent is not None and name in parent:
                del parent[name]
        super().save_state(name, tensors, attrs, keep)


def extract_any(model, out, cfg, data=None, log=lambda m: None, progress: bool = False) -> dict:
    """:func:`extract_sharded` when launched by torchrun (WORLD_SIZE > 1), else
    :func:`~dcgan_features.extract.run.extract`: what ``dcgan-features extract`` calls."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return extract_sharded(model, out, cfg, data, log, progress)
    from .run import extract

    return extract(model, out, cfg, data, log, progress)


def extract_sharded(model, out, cfg, data=None, log=lambda m: None, progress: bool = False) -> dict:
    """:func:`~dcgan_features.extract.run.extract` on this rank of a torchrun group (see the module doc)."""
    out = Path(out)
    with joined(cfg.device) as ctx, contextlib.ExitStack() as held:
        kept = f"the rows written so far are kept in {out}.part*of{ctx.world}.partial: run the same command " \
               f"again to resume"
        with stop_on_sigterm(ctx, kept):
            try:
                return _Sharded(ctx, model, out, cfg, log if ctx.rank == 0 else (lambda m: None), held).run(
                    data, progress and ctx.rank == 0)
            except LostRankError as e:
                raise LostRankError(f"{e}; {kept}") from None


class _Sharded:
    def __init__(self, ctx: DistContext, model, out: Path, cfg, log, held: contextlib.ExitStack):
        self.ctx, self.model, self.out, self.cfg, self.log, self.held = ctx, model, out, cfg, log, held

    # (1) every rank checks and loads; all agree on the settings, the world size and the folder
    def _setup(self, data) -> bool:
        from .run import _inputs

        ctx, cfg, out = self.ctx, self.cfg, self.out
        token = out.parent / f".{out.name}.ranks-{uuid.uuid4().hex}" if ctx.rank == 0 else None

        def load() -> dict:
            if ctx.rank == 0:  # the final name is this job's alone, as for one process (held to the end)
                from ..core.locks import output_lock

                self.held.enter_context(output_lock(out))
            self.device = resolve_device(cfg.device, ctx.local_rank)
            self.plan, self.images, self.labels, self.meta = _inputs(self.model, out, cfg, data)
            if token is not None:
                token.touch()
            self.rows = {s: len(v) for s, v in self.labels.items()}
            return {"settings": {**dataclasses.asdict(cfg), "model": self.model.sha256, "spec": self.model.spec,
                                 "rows": self.rows,
                                 "out": str(out.resolve())}, "token": str(token) if token else None}

        try:
            mine = agree(ctx, load)
            first = mine[0]

            def verdict() -> bool:
                if mine[ctx.rank]["settings"] != first["settings"]:
                    a, b = mine[ctx.rank]["settings"], first["settings"]
                    diff = "; ".join(f"{k} {json.dumps(a[k])} vs {json.dumps(b[k])}"
                                     for k in a if a[k] != b.get(k))
                    raise UserError(f"rank {ctx.rank} was launched with other settings than rank 0 ({diff}); "
                                    f"launch every rank with the same command")
                if not Path(first["token"]).exists():
                    raise UserError(f"rank {ctx.rank} does not see the files rank 0 writes in {str(out.parent)!r}; "
                                    f"--out must be on a folder every rank shares")
                small = {s: n for s, n in self.rows.items() if n < ctx.world}
                if small:
                    s, n = next(iter(small.items()))
                    raise UserError(f"{ctx.world} ranks but split {s!r} has only {n} rows; start at most {n} "
                                    f"processes (--nproc-per-node)")
                if ctx.rank == 0 and all(m["settings"] == first["settings"] for m in mine):
                    return self._final_state()  # (a rank with other settings raises its own error)
                return False

            return agree(ctx, verdict)[0]
        finally:
            if token is not None:
                token.unlink(missing_ok=True)

    def _final_writer(self, overwrite: bool) -> FeatureWriter:
        splits = {s: (self.labels[s], np.arange(self.rows[s], dtype=np.int64)) for s in self.cfg.splits}
        from .run import resume_key

        return FeatureWriter(self.out, self.meta, splits, resume_key=resume_key(self.cfg, self.plan),
                             overwrite=overwrite, log=self.log)

    def _final_state(self) -> bool:
        """Rank 0: is ``out`` already whole? (also: refuse a foreign file, old parts, too little disk)"""
        check_no_parts(self.out, self.ctx.world, self.cfg.overwrite)
        w = self._final_writer(self.cfg.overwrite)
        try:
            w.open()
        finally:
            w.close()
        return w.state == "done"

    # (2) this rank's part file, (3) the source's preparation shared by the ranks, (4) its rows
    def run(self, data, progress: bool) -> dict:
        from .run import _disk_error, _run, _tf32, resume_key

        ctx, cfg = self.ctx, self.cfg
        t0 = time.perf_counter()
        summary = {"path": str(self.out), "rows": {}, "rank": ctx.rank}
        if self._setup(data):
            if ctx.rank == 0:
                self._remove_parts()
            rows = {s: self.rows[s] for s in cfg.splits}
            return {**summary, "state": "done", "rows": rows, "seconds": 0.0, "images_per_s": 0.0}
        bs = cfg.batch_size
        self.shares = {s: share(n, ctx.world, ctx.rank, bs) for s, n in self.rows.items()}
        splits = {s: (self.labels[s][lo:hi], np.arange(lo, hi, dtype=np.int64))
                  for s, (lo, hi) in self.shares.items() if s in cfg.splits}
        part = _PartWriter(part_path(self.out, ctx.rank, ctx.world), self.meta, splits,
                           resume_key={**resume_key(cfg, self.plan), "rank": ctx.rank, "world": ctx.world},
                           overwrite=cfg.overwrite, log=self.log)
        try:
            def open_part() -> str:
                try:
                    part.open()
                except OSError as e:
                    raise _disk_error(e, self.out, None) from None
                return part.state

            states = agree(ctx, open_part)
            images = {s: self.images[s][lo:hi] for s, (lo, hi) in self.shares.items() if s in cfg.splits}

            def work() -> int:
                try:
                    with _tf32(cfg.tf32):
                        return _run(self.model, self.plan, self.device, cfg, part, images,
                                    {s: len(v[0]) for s, v in splits.items()}, t0, self.log,
                                    progress, prepare=lambda m, p, c: self._prepare(m, p, c, part))["computed"]
                except OSError as e:
                    raise _disk_error(e, self.out, part) from None
                finally:
                    part.close()  # before the verdict: rank 0 reads every part next

            computed = sum(agree(ctx, work))
        finally:
            part.close()
        agree(ctx, lambda: self._join() if ctx.rank == 0 else None)  # all ranks leave with the file whole
        seconds = time.perf_counter() - t0
        return {**summary, "state": "resume" if "resume" in states else "new",
                "rows": {s: self.rows[s] for s in cfg.splits}, "seconds": seconds,
                "images_per_s": computed / seconds if seconds > 0 else 0.0}

    def _prepare(self, model, plan, pctx, part: _PartWriter) -> None:
        """The source's preparation with every rank's help, then rank 0's result on every rank.

        ``saved`` answers for the group (a state counts as saved only if every part holds it),
        so all ranks take the same path; BN re-estimation measures each rank's share of the
        train batches and gathers the rows (:func:`~dcgan_features.extract.hooks.recompute_bn_stats`).
        Anything else a source prepares (a K-means fit) runs on every rank; rank 0's saved
        state is then given to all, which reload it, so every part holds the same.
        """
        import torch.distributed as dist

        from .run import _authors_bn_batches

        ctx, bs = self.ctx, self.cfg.batch_size
        train = self.images.get("train")  # the whole split (pctx.images holds this rank's shares)
        images = dict(pctx.images)
        bn_batches = pctx.bn_batches
        if bn_batches is not None and train is not None:  # the authors' rows of the whole split, every rank
            bn_batches = lambda: _authors_bn_batches(self.cfg, train, self.device, self.log)  # noqa: E731
        counts, lo, hi = [], 0, 0
        if train is not None:
            images["train"] = train
            n = train.shape[0]
            lo, hi = share(n, ctx.world, ctx.rank, bs)
            counts = [-(-(b - a) // bs) for a, b in (share(n, ctx.world, r, bs) for r in range(ctx.world))]

        def batches(split):
            x = train[lo:hi] if split == "train" else images[split]
            return (x[i:i + bs].to(self.device, non_blocking=True) for i in range(0, x.shape[0], bs))

        def saved(name):
            mine = part.saved_state(name)
            return mine if all(agree(ctx, lambda: mine is not None)) else None

        made: dict = {}

        def save(name, tensors, attrs=None, keep=False):
            made[name] = ({k: v.detach().cpu() for k, v in tensors.items()}, dict(attrs or {}), keep)

        def gather(rows):
            return gather_rows(ctx, rows.to(self.device), counts).cpu()

        model.prepare(plan, dataclasses.replace(pctx, images=images, batches=batches, saved=saved, save=save,
                                                gather=gather, bn_batches=bn_batches))
        box = [made]
        dist.broadcast_object_list(box, src=0)
        if box[0]:
            for name, (tensors, attrs, keep) in box[0].items():
                part.save_state(name, tensors, attrs, keep)
            model.prepare(plan, dataclasses.replace(pctx, images=images, saved=part.saved_state))  # rank 0's state

    # (5) rank 0: parts -> <out>.partial -> <out>, then the parts go
    def _join(self) -> None:
        w = self._final_writer(self.cfg.overwrite)  # overwrite: the start made this partial afresh
        try:
            w.open()
            if w.state != "done":
                self._copy_prepared(w)
                for split in self.cfg.splits:
                    if not w.is_complete(split):
                        self._copy_split(w, split)
                self.log(f"joined {self.ctx.world} part files into {self.out}")
                w.finish()
        except OSError as e:
            from .run import _disk_error

            raise _disk_error(e, self.out, w) from None
        finally:
            w.close()
        self._remove_parts()

    def _copy_split(self, w: FeatureWriter, split: str) -> None:
        start = w.committed(split)
        block = max(1, JOIN_BLOCK_BYTES // (self.meta.dim * np.dtype(self.meta.dtype).itemsize))
        for r in range(self.ctx.world):
            lo, hi = share(self.rows[split], self.ctx.world, r, self.cfg.batch_size)
            if hi <= start:
                continue
            with h5py.File(partial_path(part_path(self.out, r, self.ctx.world)), "r") as f:
                g = f[split]
                if not g.attrs["complete"] or g.attrs["n_rows"] != hi - lo:
                    raise FeatureFileError(f"part {r} of {self.out} lacks rows of {split!r}; run the same command "
                                           f"again to finish it")
                feats = g["features"]
                for a in range(max(start, lo), hi, block):
                    b = min(a + block, hi)
                    w.write(split, a, feats[a - lo:b - lo])
                    w.commit(split)
        w.complete(split)

    def _copy_prepared(self, w: FeatureWriter) -> None:
        """What the source prepared (BN statistics, a kept K-means dictionary), from part 0."""
        with h5py.File(partial_path(part_path(self.out, 0, self.ctx.world)), "r") as f:
            for group, keep in ((RESUME, False), (SOURCE, True)):
                for name, g in (f[group].items() if group in f else ()):
                    if isinstance(g, h5py.Group) and w.saved_state(name) is None:
                        w.save_state(name, {k: torch.from_numpy(v[...]) for k, v in g.items()},
                                     {k: decode_attr(v) for k, v in g.attrs.items()}, keep)

    def _remove_parts(self) -> None:
        for p in _parts_on_disk(self.out).get(self.ctx.world, []):
            p.unlink(missing_ok=True)

