"""The DCGAN training loop: one device, or many under ``torchrun`` (DDP).

Paper defaults (Radford et al. 2015): Adam lr 2e-4, betas (0.5, 0.999), batch 128,
BCE-with-logits with the non-saturating G loss, one D step per G step, z from the
architecture's prior. The whole dataset sits on the device (pre-normalised in the compute
dtype where that fits, else uint8) and a batch is one gather there: no DataLoader, no PIL
in the hot loop. The step itself is ``train_step.TrainStep`` (one D pass over
cat(real, fake) with per-half BatchNorm statistics); with ``cuda_graph=True`` (CUDA only, off by
default) it is captured once as a CUDA graph and replayed (``graph.py``); checkpoints are
written in the background.

A run is fully determined by its config: every RNG it draws from is seeded from
``seed`` and saved in each checkpoint, so ``resume=True`` continues bit for bit (CPU).
``batch_size`` is the global batch: under torchrun each of the ``world`` ranks takes an
equal share of every batch and of every z draw, so the data and noise seen per step do
not depend on the number of processes.

A run is ``train(TrainConfig(...))``; tests/test_train.py runs real ones (a full run in a
doctest would spend seconds importing torch._dynamo and matplotlib)::

    train(TrainConfig(dataset="digits", arch="dcgan32", width=16, epochs=5, out="runs/d"))

>>> TrainConfig(dataset="digits", arch="dcgan32", out="runs/d").batch_size  # the paper's
128
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..nets import checkpoint
from ..nets.architectures import get_arch, sample_z
from .ckpt_writer import CheckpointWriter, snapshot
from ..core.devices import DistContext, device_name, init_distributed, resolve_device
from ..core.errors import UserError, WriteError
from ..core.threads import TRAIN_SMALL_PARAMS, choose_threads, model_size, thread_scope
from ..core.locks import output_lock
from .config import TrainConfig
from .state import (RunFolder, capture_rng, catch_signals, check_same_data, data_fingerprint,
                          load_resumable, restore_rng)
from .step import DeviceImages, StepStats, TrainStep, to_unit_range

__all__ = ["TrainConfig", "TrainResult", "Interrupted", "NonFiniteLoss", "GraphMismatch", "train", "make_generators",
           "to_unit_range"]

N_SAMPLES = 64  # the fixed-z sample grid, 8 x 8


@dataclass
class TrainResult:
    """What a finished run produced."""

    out: Path
    checkpoint: Path
    step: int
    epoch: float
    img_per_s: float  # this call's images over its wall time in the loop, all ranks together (0: no step taken)
    last_metrics: dict = field(default_factory=dict)


class Interrupted(UserError):
    """SIGINT/SIGTERM: a checkpoint was written; exit code 128 + signal number."""


class NonFiniteLoss(UserError):
    """A loss became NaN or inf; the last good checkpoint is left as it was."""


class GraphMismatch(UserError):
    """The CUDA graph's step disagrees with the eager step; the last good checkpoint is left as it was."""


# ------------------------------------------------------------------ small pieces


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The batch-order generator (CPU) and the z generator (on ``device``), same on every rank."""
    data_gen = torch.Generator().manual_seed(seed)
    z_gen = torch.Generator(device=device).manual_seed(seed + 1)
    return data_gen, z_gen


# ---------------------------------------------------------------------- the loop


def train(config: TrainConfig, images: torch.Tensor | None = None) -> TrainResult:
    """Train a DCGAN as ``config`` says; returns where the final checkpoint is.

    ``images`` (uint8, N x 3 x S x S) replaces loading ``config.dataset`` (benchmarks,
    notebooks); ``config.dataset`` then only names the data in config.json.
    """
    cfg = dataclasses.replace(config)
    cfg.validate()
    spec = get_arch(cfg.arch)
    cfg.width = spec.default_width if cfg.width is None else int(cfg.width)
    cfg.nz = spec.nz if cfg.nz is None else int(cfg.nz)
    cfg.out = str(cfg.out)
    # Rank 0 owns the run folder: a second run on it is refused before any work (the lock's
    # folder is removed again if this run fails before writing anything).
    with output_lock(cfg.out, folder=True) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext():
        return _train_locked(cfg, spec, images)


def _train_locked(cfg: TrainConfig, spec, images: torch.Tensor | None) -> TrainResult:
    folder = RunFolder(cfg.out)
    # A bad --resume or a taken --out fails before any data is loaded.
    ckpt = load_resumable(folder.last, dataclasses.asdict(cfg)) if cfg.resume else None
    if not cfg.resume:
        folder.check_fresh(cfg.overwrite)
    if cfg.cuda_graph and int(os.environ.get("WORLD_SIZE", "1")) > 1 and cfg.device != "cpu":
        from .graph import prepare_distributed_env

        prepare_distributed_env()  # must precede the process group
    dist_ctx = init_distributed(cfg.device)
    try:
        device = resolve_device(cfg.device, dist_ctx.local_rank)
        if cfg.batch_size % dist_ctx.world:
            raise UserError(f"--batch-size {cfg.batch_size} is the global batch and must divide by the "
                            f"{dist_ctx.world} processes")
        use_graph = _use_cuda_graph(cfg, device, dist_ctx)  # a refused --cuda-graph fails before any work
        flag: dict = {}
        with catch_signals(flag):
            try:
                return _Run(cfg, spec, device, dist_ctx, folder, flag, ckpt, images, use_graph).run()
            except WriteError as e:
                if not (e.disk_full and folder.last.is_file()):
                    raise
                raise WriteError(f"{e} (the last checkpoint is whole; resume with: {cfg.resume_command()})",
                                 disk_full=True) from None
    finally:
        if dist_ctx.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _use_cuda_graph(cfg: TrainConfig, device: torch.device, dist_ctx: DistContext) -> bool:
    """Whether this run's step is one captured CUDA graph (``graph.py``): only when asked for
    (off by default: no results row shows the graphed step on a GPU yet). Asked for where it
    cannot apply (a CPU, an NCCL that cannot capture), the run is refused in one line.
    """
    if not cfg.cuda_graph:
        return False
    from .graph import why_not_capturable

    why = why_not_capturable(device, dist_ctx)
    if why is not None:
        raise UserError(f"--cuda-graph: {why}; drop --cuda-graph to train eagerly")
    return True


@dataclass
class _Window:
    """The logging window: steps since the last sync, its start time, the last metrics row."""

    steps: int = 0
    start: float = field(default_factory=time.perf_counter)
    last_row: dict = field(default_factory=dict)


class _Run:
    """One run's models, optimizers, generators and counters."""

    def __init__(self, cfg: TrainConfig, spec, device: torch.device, dist_ctx: DistContext, folder: RunFolder,
                 flag: dict, ckpt: dict | None = None, images: torch.Tensor | None = None,
                 use_graph: bool = False):
        from ..data import registry as data

        self.cfg, self.spec, self.device, self.dist, self.folder, self.flag = cfg, spec, device, dist_ctx, folder, flag
        self.is_main = dist_ctx.rank == 0
        self.amp = bool(cfg.amp and device.type == "cuda")

        if images is None:
            split = data.get_dataset(cfg.dataset).gan_split  # the benchmark's unlabeled images where it has them
            images = data.load(cfg.dataset, split, data_dir=cfg.data_dir, image_size=spec.image_size).images
        elif images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, spec.image_size, spec.image_size):
            raise UserError(f"{cfg.arch} trains on uint8 images of shape (N, 3, {spec.image_size}, "
                            f"{spec.image_size}), got {images.dtype} {tuple(images.shape)}")
        self.n_images = int(images.shape[0])
        self.data_fingerprint = data_fingerprint(images)
        if ckpt is not None:
            check_same_data(ckpt, self.data_fingerprint, folder.last)
        if cfg.batch_size > self.n_images:
            raise UserError(f"--batch-size {cfg.batch_size} is larger than the {self.n_images} images of "
                            f"{cfg.dataset} train; use a smaller --batch-size")
        if self.is_main:  # after the cheap checks, so a refused run leaves no folder behind
            folder.prepare()
        # What D's first layer computes in: batches are gathered already in that dtype.
        compute_dtype = torch.bfloat16 if self.amp else torch.float32
        self.data = DeviceImages(images, device, compute_dtype, cfg.prenormalize)
        self.steps_per_epoch = self.n_images // cfg.batch_size  # drop the ragged last batch
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.local_batch = cfg.batch_size // dist_ctx.world
        if device.type == "cuda":
            # Fixed shapes every step: let cuDNN time its algorithms once. (GPU runs are
            # therefore not bit-reproducible; the exact-resume guarantee is for the CPU.)
            torch.backends.cudnn.benchmark = True

        self.G, self.D = spec.build(cfg.width, nz=cfg.nz, seed=cfg.seed)  # same init on every rank
        # Per-rank global seeds: anything that draws from the global RNGs differs across ranks,
        # while data order and z come from the shared generators below.
        torch.manual_seed(cfg.seed + dist_ctx.rank)
        np.random.seed(cfg.seed + dist_ctx.rank)
        random.seed(cfg.seed + dist_ctx.rank)
        self.G.to(device, memory_format=torch.channels_last)
        self.D.to(device, memory_format=torch.channels_last)
        # A captured step needs Adam's capturable=True (its step counters live on the device).
        self.stepper = TrainStep(self.G, self.D, lr=cfg.lr, beta1=cfg.beta1, batch=self.local_batch, device=device,
                                 amp=self.amp, joint=cfg.joint_d, fused=device.type == "cuda", capturable=use_graph)
        self.opt_g, self.opt_d = self.stepper.opt_g, self.stepper.opt_d
        self.writer = CheckpointWriter(background=cfg.async_ckpt)
        self.data_gen, self.z_gen = make_generators(cfg.seed, device)
        self.fixed_z = sample_z(spec, N_SAMPLES, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 2)).to(device)
        self.step = 0
        self.epoch_start_state = self.data_gen.get_state()
        if ckpt is not None:
            self._resume(ckpt)
        self.stats = StepStats(device, self.step)
        self.graph, self.wrapped = None, False
        if use_graph:  # resume state is loaded first: the capture records these very tensors
            from .graph import GraphedStep

            self.graph = self._capture(GraphedStep)
        # A graphed run's first step is also taken eagerly from the same state (then undone);
        # the first window's sync compares the two (graph.SelfCheck).
        self.check_due, self.pending_check = self.graph is not None, None
        if not self.wrapped:
            self._wrap_models()

    # ------------------------------------------------------------------ setup

    def _resume(self, ckpt: dict) -> None:
        G, D = checkpoint.models_from_payload(ckpt, str(self.folder.last))
        self.G.load_state_dict(G.state_dict())
        self.D.load_state_dict(D.state_dict())
        self.stepper.load_optimizers(ckpt["optimizer_G"], ckpt["optimizer_D"])
        self.step = int(ckpt["step"])
        restore_rng(ckpt["rng"], self.data_gen, self.z_gen, restore_global=self.is_main)
        self.epoch_start_state = self.data_gen.get_state()
        if self.is_main:
            self.folder.truncate_metrics(self.step)

    def _capture(self, graphed_step):
        """The captured step; a capture that fails stops the run in one line (state as before)."""
        from .graph import CaptureFailed

        try:
            return graphed_step(self.stepper, self.stats, self.data, self.spec, nz=self.cfg.nz,
                                global_batch=self.cfg.batch_size, rank=self.dist.rank, z_gen=self.z_gen,
                                device=self.device, step=self.step, wrap_models=self._wrap_models,
                                distributed=self.dist.enabled)
        except CaptureFailed as e:
            raise UserError(f"--cuda-graph: capturing the step failed ({e}); drop --cuda-graph") from None

    def _wrap_models(self) -> None:
        """Train-time callables: DDP for gradient sync, then torch.compile if asked."""
        G_step, D_step, D_for_g = self.G, self.D, self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # BatchNorm under DDP: keep per-rank batch statistics (what one GPU with the
            # per-rank batch would compute, as in the paper) and never sync buffers in
            # forward. With the default, DDP overwrites the BN running stats in place from
            # rank 0 at every forward; D runs two forwards per step (cat(real, fake), then
            # G's step; three with --no-joint-d), and overwriting buffers autograd saved
            # raises "modified by an inplace operation". Running stats are unused in
            # training mode; rank 0's are saved.
            # SyncBatchNorm would instead all-reduce at every BN layer of every forward
            # (~20 collectives a step) and rejects CPU tensors, so gloo could not test it.
            # Newer torch renames broadcast_buffers=False to forward_sync_buffers=False
            # (buffers still synced once at init, harmless: every rank inits identically).
            params = inspect.signature(DDP.__init__).parameters
            no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {
                "broadcast_buffers": False}
            G_step = DDP(self.G, device_ids=ids, **no_sync)
            D_step = DDP(self.D, device_ids=ids, **no_sync)
        if self.cfg.compile:
            # Default mode: no CUDA graphs of its own (a graphed step captures the whole step).
            # D is compiled once per BN split (joint D pass) and grad mode (G step, D frozen).
            G_step, D_step = torch.compile(G_step), torch.compile(D_step)
            D_for_g = torch.compile(self.D) if self.dist.enabled else D_step
        self.stepper.wrap(G_step, D_step, D_for_g, distributed=self.dist.enabled)
        self.wrapped = True

    # --------------------------------------------------------------- one step

    def take_step(self, index: torch.Tensor) -> None:
        """One step on the images ``index`` (this rank's share, on the device): a graph replay,
        or the eager step; its statistics go to ``self.stats``. Never syncs the device."""
        if self.graph is not None:
            if self.check_due:
                self.check_due, self.pending_check = False, self.graph.checked_step(index)
            else:
                self.graph.step(index)
            return
        b, r = self.local_batch, self.dist.rank
        real = self.data.batch(index)
        # z for the whole global batch from the shared generator; each rank takes its slice.
        z = sample_z(self.spec, self.cfg.batch_size, self.cfg.nz, generator=self.z_gen, device=self.device)
        self.stats.add(self._train_step(real, z[r * b:(r + 1) * b]))

    def _train_step(self, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One eager step (train_step.TrainStep); its four statistics, detached."""
        return self.stepper(real, z)

    # ------------------------------------------------------------- the epochs

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.threads = choose_threads(cfg.threads, model_size(self.G, self.D), TRAIN_SMALL_PARAMS, self.device.type)
        if self.is_main:
            self.folder.create()
            if self.step == 0:
                self.folder.start_fresh()
            self.folder.write_config(self._config_record())
        from ..core.progress import Progress

        # a line per epoch off a terminal, but at least ten in a run
        every = min(self.steps_per_epoch, -(-self.total_steps // 10))
        self.bar = Progress(self.total_steps, "train", unit="step", initial=self.step, every=every,
                            mode=cfg.progress if self.is_main else False)
        self.window = _Window()
        self.G.train()
        self.D.train()
        first_step, t0 = self.step, time.perf_counter()
        try:
            with thread_scope(self.threads):
                while self.step < self.total_steps:
                    if self._epoch():
                        break
        finally:
            self.bar.close()
            self.writer.wait()  # the last checkpoint is on disk (or its error raised) before we return
        if self.is_main:
            self.folder.plot_losses()
        # the rate the progress bar shows: every step of this call over the loop's wall time (the mean of
        # the logged windows' rates weighed a short first window like a full one)
        seconds = time.perf_counter() - t0
        img_s = (self.step - first_step) * cfg.batch_size / seconds if self.step > first_step else 0.0
        return TrainResult(self.folder.out, self.folder.last, self.step, self.step / self.steps_per_epoch,
                           img_s, self.window.last_row)

    def _epoch(self) -> bool:
        """The rest of the current epoch; True when the run is done."""
        cfg, b, r = self.cfg, self.local_batch, self.dist.rank
        epoch = self.step // self.steps_per_epoch
        i0 = self.step % self.steps_per_epoch
        if i0 == 0:
            self.epoch_start_state = self.data_gen.get_state()
        else:  # resumed mid-epoch: redraw this epoch's order from its start state
            self.data_gen.set_state(self.epoch_start_state)
        perm = torch.randperm(self.n_images, generator=self.data_gen).to(self.device)
        for i in range(i0, self.steps_per_epoch):
            start = i * cfg.batch_size + r * b
            self.take_step(perm[start:start + b])
            self.step += 1
            self.window.steps += 1

            epoch_end = i + 1 == self.steps_per_epoch
            done = self.step >= self.total_steps
            want_ckpt = self.step % cfg.ckpt_every == 0 or epoch_end or done
            stop_local = "signal" in self.flag
            if self.step % cfg.log_every == 0 or want_ckpt or (stop_local and not self.dist.enabled):
                self._end_window(epoch, epoch_end, want_ckpt, stop_local)
            self.bar.update(1)  # after the window: a progress line carries this step's losses
            if done:
                return True
        return False

    def _reduce_window(self, stop_local: bool) -> tuple[torch.Tensor, int]:
        """The window's sums (averaged over ranks), the stop/NaN flags, and the first bad step: one sync."""
        st = self.stats
        packed = torch.cat([st.acc, torch.tensor([float(stop_local), float(st.first_bad >= 0)], device=self.device,
                                                 dtype=torch.float64)])
        bad_step = int(st.first_bad)
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(packed)
            if packed[5] > 0:
                fb = torch.where(st.first_bad >= 0, st.first_bad, torch.full_like(st.first_bad, 2**62))
                dist.all_reduce(fb, op=dist.ReduceOp.MIN)
                bad_step = int(fb)
            packed[:4] /= self.dist.world
        return packed, bad_step

    def _end_window(self, epoch: int, epoch_end: bool, want_ckpt: bool, stop_local: bool) -> None:
        """The sync point: check losses, log, maybe checkpoint, maybe sample, maybe stop."""
        cfg, w = self.cfg, self.window
        packed, bad_step = self._reduce_window(stop_local)
        self._verify_graph()
        if packed[5] > 0:
            self.writer.wait()  # a good checkpoint still being written counts as the last good one
            where = (f"last good checkpoint: {self.folder.last}" if self.folder.last.is_file()
                     else "no checkpoint was written")
            raise NonFiniteLoss(f"non-finite loss at step {bad_step}; stopped ({where}); "
                                "lower --lr or check the data")
        elapsed = time.perf_counter() - w.start
        img_s = w.steps * cfg.batch_size / max(elapsed, 1e-9)
        mean = (packed[:4] / w.steps).tolist()
        w.last_row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                      "loss_d": mean[0], "loss_g": mean[1], "d_x": mean[2], "d_g_z": mean[3],
                      "img_per_s": round(img_s, 1)}
        if self.is_main:
            self.folder.append_metrics(w.last_row)
            self.bar.set_postfix(**{"img/s": f"{img_s:.0f}", "loss_D": f"{mean[0]:.3f}", "loss_G": f"{mean[1]:.3f}"})
        self.stats.acc.zero_()
        stop = bool(packed[4] > 0)
        if want_ckpt or stop:
            self._save_checkpoint(epoch_end=epoch_end, epoch=epoch)
        if epoch_end and self.is_main and (epoch + 1) % cfg.sample_every == 0:
            self._save_samples(epoch + 1)
        if stop:
            self.writer.wait()
            if self.is_main:
                self.folder.plot_losses()
            signum = self.flag.get("signal", signal.SIGTERM)
            err = Interrupted(f"interrupted by {signal.Signals(signum).name} at step {self.step}; "
                              f"checkpoint saved to {self.folder.last}; resume with: {cfg.resume_command()}")
            err.exit_code = 128 + int(signum)
            raise err
        w.start, w.steps = time.perf_counter(), 0

    def _verify_graph(self) -> None:
        """At the first window's sync: the replayed step must agree with the eager one, else stop
        before anything of the graphed run is saved."""
        if self.pending_check is None:
            return
        check, self.pending_check = self.pending_check, None
        why = check.verdict()
        if why is not None:
            self.writer.wait()  # a good checkpoint still being written counts as the last good one
            where = (f"last good checkpoint: {self.folder.last}" if self.folder.last.is_file()
                     else "no checkpoint was written")
            raise GraphMismatch(f"--cuda-graph: the replayed step disagrees with the eager step at step "
                                f"{self.step - self.window.steps + 1} ({why}); stopped ({where}); drop --cuda-graph")

    # ------------------------------------------------------------------ outputs

    def _save_checkpoint(self, epoch_end: bool, epoch: int) -> None:
        if not self.is_main:
            return
        # The data generator state that redraws the order of the epoch the next step is in.
        data_state = self.data_gen.get_state() if epoch_end else self.epoch_start_state
        rng = capture_rng(self.data_gen, self.z_gen)
        rng["data"] = data_state
        # A snapshot (every tensor copied to the host) now; the file is written by self.writer,
        # on a background thread unless --no-async-ckpt, while the next steps run.
        payload = snapshot(checkpoint.make_payload(
            self.cfg.arch, self.cfg.width, self.G, self.D, nz=self.cfg.nz, config=dataclasses.asdict(self.cfg),
            trained_on=self.cfg.dataset,
            optimizer_G=self.opt_g.state_dict(), optimizer_D=self.opt_d.state_dict(),
            step=self.step, epoch=self.step / self.steps_per_epoch, steps_per_epoch=self.steps_per_epoch, rng=rng,
            data_fingerprint=self.data_fingerprint))
        paths = [self.folder.last]
        if epoch_end and self.cfg.keep_every and (epoch + 1) % self.cfg.keep_every == 0:
            paths.append(self.folder.checkpoints / f"epoch_{epoch + 1:03d}.pt")
        self.writer.submit(paths, payload, save=checkpoint.save)

    @torch.no_grad()
    def _save_samples(self, epoch: int) -> None:
        # Eval mode: BN uses running stats, and sampling leaves the training state untouched.
        self.G.eval()
        with self.stepper.autocast():
            images = self.G(self.fixed_z)
        self.G.train()
        self.folder.save_samples(images, epoch)

    def _config_record(self) -> dict:
        dev = device_name(self.device)
        import platform

        import torchvision

        return {"config": dataclasses.asdict(self.cfg), "package_version": __version__,
                "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
                "python_version": platform.python_version(), "argv": sys.argv,
                "device": str(self.device), "device_name": dev, "amp_effective": self.amp,
                "cuda_graph_effective": self.graph is not None, "prenormalized": self.data.prenormalized,
                "world_size": self.dist.world, "n_images": self.n_images, "data_fingerprint": self.data_fingerprint,
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, **self.threads.record()}
