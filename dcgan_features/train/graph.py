"""The whole training step as one CUDA graph: captured once, replayed every step.

An eager step of ``imagenet32`` launches about 400 kernels, and at batch 128 on an H100
Python issues them more slowly than the GPU runs them. Captured, the step is one
``graph.replay()`` plus two small launches: the batch indices copied into a static index
buffer, and z drawn into a static buffer from the run's own (checkpointed) z generator.
Everything else happens inside the graph: the gather of the batch from the device-resident
images, G forward, the joint D pass and its backward, the fused capturable Adam steps
of D and G, the G step (through a frozen D), and the loss sums and the non-finite check
(``train_step.StepStats``), which the loop reads once per logging window.

The mathematics are :class:`~dcgan_features.train.step.TrainStep`'s, unchanged: the graph
records the very same calls. Exact resume holds because nothing random happens inside the
graph (z is drawn outside, exactly as the eager loop draws it), the data order comes from the
CPU generator, and the resume state is loaded into the live tensors before capture.

Capture needs a few eager warm-up steps first (cuDNN autotuning, Adam's lazy state,
torch.compile, DDP's bucket set-up: 11 steps under DDP, as PyTorch's CUDA-graph notes
require). Warm-up steps are real updates, so every tensor they touch (weights, BN
buffers, optimizer state) is saved before and copied back in place afterwards: the first
replayed step is the run's next step, not its fourth.

This module only runs on CUDA; on a CPU the loop never imports it (tests/train/test_train_graph.py
checks it against the eager step where a GPU is present, and its logic on a CPU through a
stand-in graph). Nothing graphed has run on a GPU yet, so a graphed run checks itself: its first
step is also taken eagerly from the same state (then undone), and at the first logging window
the two steps' losses and weight updates must agree within bf16 tolerance (:class:`SelfCheck`),
else the run stops before anything of it is saved.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from ..nets.architectures import ArchSpec
from ..core.errors import UserError
from .step import DeviceImages, StepStats, TrainStep

__all__ = ["CaptureFailed", "GraphedStep", "SelfCheck", "why_not_capturable", "prepare_distributed_env"]

WARMUP_STEPS = 3
WARMUP_STEPS_DDP = 11  # "at least 11 DDP-enabled eager iterations before capture" (PyTorch CUDA-graph notes)
MIN_NCCL = (2, 9, 6)  # first NCCL whose collectives can be captured
# The self-check's tolerances: one step from the same state, eager vs replayed. The same kernels
# run in both, so they differ only by cuDNN's non-deterministic reductions, far below one bf16
# rounding (2^-8 = 0.4%). A wrong graph moves them by far more: on the CPU stand-in
# (tests/train/test_train_graph.py, dcgan32 width 4) a stale z buffer moved loss_G by 2.5% and a
# tensor's update by 124%, stale batch indices loss_D by 0.6% and a tensor's update by 31%.
CHECK_LOSS_RTOL, CHECK_LOSS_ATOL = 2.0 ** -8, 1e-4  # one bf16 rounding
CHECK_UPDATE_RTOL = 2e-2  # per tensor: |replayed update - eager update| <= 2% of |eager update|


class CaptureFailed(RuntimeError):
    """Warm-up or capture raised; the run's state is as before the attempt."""


def why_not_capturable(device: torch.device, dist_ctx) -> str | None:
    """Why this run's step cannot be one CUDA graph, in a few words; None when it can."""
    if device.type != "cuda":
        return f"it needs a CUDA device and this run is on the {device.type.upper()}"
    if dist_ctx.enabled:
        version = tuple(torch.cuda.nccl.version())[:3] if hasattr(torch.cuda, "nccl") else ()
        if version < MIN_NCCL:
            return (f"NCCL {'.'.join(map(str, version)) or '(none)'} cannot capture collectives "
                    f"(needs {'.'.join(map(str, MIN_NCCL))} or later)")
    return None


def prepare_distributed_env() -> None:
    """Before the process group starts: NCCL collectives inside a graph need torch's
    asynchronous NCCL error handling off (PyTorch CUDA-graph notes, DDP section)."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
    os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "0")


class GraphedStep:
    """The step of ``stepper`` over ``data`` captured as one CUDA graph.

    ``wrap_models`` installs the DDP/compile wrappers on the stepper; it is called on the
    side stream the warm-up runs on (DDP must be constructed there to be capturable).
    ``global_batch`` z rows are drawn per step from ``z_gen``; this rank uses rows
    ``rank * local .. (rank + 1) * local``, as the eager loop does.
    """

    def __init__(self, stepper: TrainStep, stats: StepStats, data: DeviceImages, spec: ArchSpec, *, nz: int,
                 global_batch: int, rank: int, z_gen: torch.Generator, device: torch.device, step: int,
                 wrap_models: Callable[[], None], distributed: bool = False):
        self.stepper, self.stats, self.data, self.spec, self.z_gen = stepper, stats, data, spec, z_gen
        self.distributed = distributed
        self.local = stepper.ones.shape[0]
        self.rows = slice(rank * self.local, (rank + 1) * self.local)
        self.idx = torch.arange(self.local, device=device) % len(data)  # static index buffer
        self.z_raw = torch.empty(global_batch, nz, device=device)  # static z buffer, prior's raw draw
        stepper.autocast_cache = False  # autocast's weight-cast cache must not outlive a capture
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        saved = None
        try:
            with torch.cuda.stream(side):
                wrap_models()
                saved = self._save_state()
                warm_gen = torch.Generator(device=device).manual_seed(12345)  # never the run's z generator
                for _ in range(WARMUP_STEPS_DDP if distributed else WARMUP_STEPS):
                    self._draw_z(warm_gen)
                    self._body()
            torch.cuda.current_stream(device).wait_stream(side)
            self._restore_state(saved)
            stats.reset(step)
            stepper.opt_d.zero_grad(set_to_none=True)
            stepper.opt_g.zero_grad(set_to_none=True)
            torch.cuda.synchronize(device)
            self._capture()
        except torch.cuda.OutOfMemoryError:
            raise UserError(_oom_message(device, self.local)) from None
        except RuntimeError as e:  # e.g. an op that cannot be captured: undo the warm-up, say why
            torch.cuda.synchronize(device)
            if saved is not None:
                self._restore_state(saved)
            stats.reset(step)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CaptureFailed(first[:200]) from e

    def _capture(self) -> None:
        """Record :meth:`_body` once; :meth:`step` replays it. (Recording runs no kernel.)"""
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()

    # ----------------------------------------------------------------- the step

    def step(self, index: torch.Tensor) -> None:
        """One training step on the images ``index`` (this rank's slice, on the device)."""
        self.idx.copy_(index, non_blocking=True)
        self._draw_z(self.z_gen)
        self.graph.replay()

    def checked_step(self, index: torch.Tensor) -> "SelfCheck":
        """:meth:`step`, after one eager step from the same state (then undone): the losses and
        the weight updates of both, for :meth:`SelfCheck.verdict` at the next sync. Syncs nothing."""
        saved, z_state = self._save_state(), self.z_gen.get_state()
        self._draw_z(self.z_gen)
        z = self.z_raw * 2 - 1 if self.spec.prior == "uniform" else self.z_raw
        eager_loss = torch.stack(self.stepper(self.data.batch(index), z[self.rows])[:2]).double()
        eager = [t.detach().clone() for t in _module_tensors(self.stepper.G, self.stepper.D)]
        self._restore_state(saved)  # the same state, the same z draw, for the replay
        self.z_gen.set_state(z_state)
        acc = self.stats.acc.clone()
        self.step(index)  # the run's step
        replayed = _module_tensors(self.stepper.G, self.stepper.D)
        return SelfCheck(eager_loss, (self.stats.acc - acc)[:2],
                         _update_gaps(saved["modules"].values(), eager, replayed), self.distributed)

    def _draw_z(self, gen: torch.Generator) -> None:
        # The same draw as architectures.sample_z(spec, global_batch, generator=gen): same kernel,
        # same generator advance; its affine map to (-1, 1) happens inside the graph.
        if self.spec.prior == "uniform":
            torch.rand(self.z_raw.shape, generator=gen, device=self.z_raw.device, out=self.z_raw)
        else:
            torch.randn(self.z_raw.shape, generator=gen, device=self.z_raw.device, out=self.z_raw)

    def _body(self) -> None:
        """What the graph records: gather, z, the step, the statistics."""
        z = self.z_raw * 2 - 1 if self.spec.prior == "uniform" else self.z_raw
        real = self.data.batch(self.idx)
        self.stats.add(self.stepper(real, z[self.rows]))

    # ----------------------------------------------- warm-up leaves no trace

    def _save_state(self) -> dict:
        """Clones (on the device) of every tensor a step changes: weights, buffers, Adam state."""
        st = self.stepper
        tensors = {f"m{i}": t for i, t in enumerate(_module_tensors(st.G, st.D))}
        opt = {}
        for name, o in (("g", st.opt_g), ("d", st.opt_d)):
            for p, state in o.state.items():  # empty on a fresh run (Adam initialises lazily)
                for k, v in state.items():
                    if torch.is_tensor(v):
                        opt[(name, id(p), k)] = v.detach().clone()
        return {"modules": {k: t.detach().clone() for k, t in tensors.items()}, "opt": opt}

    @torch.no_grad()
    def _restore_state(self, saved: dict) -> None:
        """Copy the saved values back into the same tensors (a graph records addresses)."""
        st = self.stepper
        for t, v in zip(_module_tensors(st.G, st.D), saved["modules"].values()):
            t.copy_(v)
        for name, o in (("g", st.opt_g), ("d", st.opt_d)):
            for p, state in o.state.items():
                for k, v in state.items():
                    if torch.is_tensor(v):
                        old = saved["opt"].get((name, id(p), k))
                        if old is not None:
                            v.copy_(old)
                        else:  # state the warm-up created lazily: back to Adam's fresh state (zeros, step 0)
                            v.zero_()


class SelfCheck:
    """One eager and one replayed step from the same state, on the device: both steps' losses
    (loss_d, loss_g) and, per tensor of G and D, how far apart their updates are
    (:func:`_update_gaps`)."""

    def __init__(self, eager_loss: torch.Tensor, graph_loss: torch.Tensor, update_gaps: torch.Tensor,
                 distributed: bool = False):
        self.eager_loss, self.graph_loss, self.update_gaps = eager_loss, graph_loss, update_gaps
        self.distributed = distributed

    def verdict(self) -> str | None:
        """None when both steps agree within bf16 tolerance, else what differs in a few words.
        Reads the device (a sync); under DDP every rank gets the same answer. Both steps
        diverging (non-finite losses in both) counts as agreeing: the loop's NaN check speaks."""
        loss_ok = torch.isclose(self.graph_loss, self.eager_loss, rtol=CHECK_LOSS_RTOL, atol=CHECK_LOSS_ATOL).all()
        worst = self.update_gaps.max()
        both_diverged = ~torch.isfinite(self.eager_loss).all() & ~torch.isfinite(self.graph_loss).all()
        bad = ((~loss_ok | ~(worst <= CHECK_UPDATE_RTOL)) & ~both_diverged).double()  # a NaN gap counts as bad
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bool(bad):
            return None
        e, g = self.eager_loss.tolist(), self.graph_loss.tolist()
        return (f"loss_D {g[0]:.4f} replayed vs {e[0]:.4f} eager, loss_G {g[1]:.4f} vs {e[1]:.4f}, "
                f"weight updates up to {float(worst):.1%} apart")


@torch.no_grad()
def _update_gaps(before, eager, replayed) -> torch.Tensor:
    """Per float tensor: ``|replayed update - eager update| / |eager update|`` (L2 norms, float64),
    the updates taken from the same ``before``. An update of exactly zero in both gives 0."""
    gaps = []
    for b, e, r in zip(before, eager, replayed):
        if b.is_floating_point():
            ue, ur = e.double() - b.double(), r.double() - b.double()
            gaps.append((ur - ue).norm() / ue.norm().clamp_min(1e-30))
    return torch.stack(gaps)


def _module_tensors(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


def _oom_message(device: torch.device, local_batch: int) -> str:
    gib = 2.0 ** 30
    free, total = torch.cuda.mem_get_info(device)
    peak = torch.cuda.max_memory_reserved(device)
    return (f"--cuda-graph: out of memory capturing the step at batch {local_batch} per GPU (it needed more than "
            f"{peak / gib:.1f} GiB; {free / gib:.1f} of {total / gib:.1f} GiB free); the last checkpoint is "
            "intact: lower --batch-size or pass --no-cuda-graph")
