"""One training step of the paper, and the device-side pieces around it.

``train.py`` owns the run (epochs, logging, checkpoints, signals); this module owns what
happens inside one step, so that the eager loop and the CUDA-graph step
(``train_graph.py``) run the very same code:

* :class:`DeviceImages`: the training set resident on the device, gathered by index;
* :class:`StepStats`: the loss sums and the first non-finite step, kept on the device and
  read once per logging window (reading them is a device sync);
* :class:`TrainStep`: the D step then the G step. With ``joint=True`` (the default) D
  sees one batch ``cat(real, fake)`` whose BatchNorm statistics are taken per half
  (``batchnorm.batch_splits``): the same mathematics as the paper's two D passes, with
  twice the rows per GEMM and half the launches.

>>> from dcgan_features.nets.architectures import get_arch, sample_z
>>> spec = get_arch("dcgan32")
>>> G, D = spec.build(4, seed=0)
>>> step = TrainStep(G, D, lr=2e-4, beta1=0.5, batch=8, device=torch.device("cpu"))
>>> real = torch.rand(8, 3, 32, 32) * 2 - 1
>>> loss_d, loss_g, d_x, d_g_z = step(real, sample_z(spec, 8))
>>> 0 < float(d_x) < 1
True
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.batchnorm import batch_splits
from ..core.devices import free_memory  # GPU free memory, or the host's MemAvailable

__all__ = ["DeviceImages", "StepStats", "TrainStep", "frozen", "to_unit_range"]

_IMPL_FLAGS = ("foreach", "fused", "capturable")
PRENORMALIZE_SHARE = 4  # pre-normalise when that copy takes at most 1/4 of the free memory


def to_unit_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], channels_last."""
    return images_u8.float().mul_(2.0 / 255.0).sub_(1.0).contiguous(memory_format=torch.channels_last)


class DeviceImages:
    """The training images on the device; :meth:`batch` is one gather.

    ``prenormalize=True`` stores them once as ``dtype`` in [-1, 1], channels_last, so a
    batch is a single ``index_select``; the values are exactly :func:`to_unit_range`'s
    (cast to ``dtype``, as autocast would cast them at D's first layer). That copy takes
    ``itemsize`` times the uint8 bytes (bf16: 2x, float32: 4x). ``None`` (auto) chooses
    it when it takes at most 1/4 of the device's free memory; otherwise the images stay
    uint8 and every batch is gathered and scaled on the fly.

    >>> imgs = DeviceImages(torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(2, 3, 1, 2).clone(),
    ...                     torch.device("cpu"), torch.float32, prenormalize=True)
    >>> imgs.batch(torch.tensor([1]))[0, 0, 0].tolist()
    [-1.0, 1.0]
    """

    def __init__(self, images_u8: torch.Tensor, device: torch.device, dtype: torch.dtype,
                 prenormalize: bool | None = None, chunk: int = 8192):
        self.dtype = dtype
        if prenormalize is None:
            need = images_u8.numel() * torch.finfo(dtype).bits // 8
            prenormalize = need * PRENORMALIZE_SHARE <= free_memory(device)
        self.prenormalized = bool(prenormalize)
        if not self.prenormalized:
            self.data = images_u8.to(device)  # uint8, resident for the whole run
            return
        # Stored N x H x W x C: a gather along N of that is contiguous, and its NCHW view is
        # channels_last for free (index_select on a channels_last NCHW tensor returns NCHW-contiguous).
        n, c, h, w = images_u8.shape
        self.data = torch.empty((n, h, w, c), dtype=dtype, device=device)
        for s in range(0, n, chunk):  # bounded temporaries
            self.data[s:s + chunk] = to_unit_range(images_u8[s:s + chunk].to(device)).permute(0, 2, 3, 1)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Images ``index`` (on the device) in [-1, 1], channels_last."""
        if self.prenormalized:
            return self.data.index_select(0, index).permute(0, 3, 1, 2)
        return to_unit_range(self.data.index_select(0, index)).to(self.dtype)


class StepStats:
    """Sums of (loss_d, loss_g, D(x), D(G(z))) and the first step with a non-finite loss,
    all on the device: adding a step launches a few kernels and never syncs."""

    def __init__(self, device: torch.device, step: int = 0):
        self.acc = torch.zeros(4, device=device, dtype=torch.float64)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self.step_t = torch.full((), step, device=device, dtype=torch.int64)

    def add(self, stats: tuple[torch.Tensor, ...]) -> None:
        self.step_t += 1
        self.acc += torch.stack(stats).double()
        bad = ~torch.isfinite(stats[0] + stats[1])
        self.first_bad.copy_(torch.where(bad & (self.first_bad < 0), self.step_t, self.first_bad))

    def reset(self, step: int) -> None:
        """Back to an empty window at ``step`` (in place: a captured graph keeps the addresses)."""
        self.acc.zero_()
        self.first_bad.fill_(-1)
        self.step_t.fill_(step)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters need no gradient inside the block (restored on exit, also on
    errors): the G step back-propagates through D to its input only, eager or compiled."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class TrainStep:
    """One D step and one G step (Radford et al.: BCE with logits, non-saturating G loss).

    ``G``/``D`` are the plain modules; ``G_step``/``D_step``/``D_for_g`` the callables that
    run them: the modules themselves until :meth:`wrap` gives DDP- and/or compile-wrapped
    ones (the optimizers exist first, so a resume can load their state before wrapping).
    ``capturable`` builds Adam with ``fused=True, capturable=True`` (CUDA-graph step).
    """

    def __init__(self, G: nn.Module, D: nn.Module, *, lr: float, beta1: float, batch: int, device: torch.device,
                 amp: bool = False, joint: bool = True, fused: bool = False, capturable: bool = False):
        self.G, self.D, self.amp, self.joint, self.distributed = G, D, amp, joint, False
        self.G_step, self.D_step, self.D_for_g = G, D, D
        self.autocast_cache = True  # a captured step turns autocast's weight-cast cache off
        # fused (CUDA): one kernel for all params; foreach (CPU): a few multi-tensor ops instead of
        # ~8 per parameter, with the same results as the per-parameter loop, bit for bit.
        kw = {"fused": True, "capturable": capturable} if fused or capturable else {"foreach": True}
        self.opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999), **kw)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999), **kw)
        self.ones = torch.ones(batch, device=device)
        self.zeros = torch.zeros(batch, device=device)

    def load_optimizers(self, state_g: dict, state_d: dict) -> None:
        """Load both optimizers' state from a checkpoint, keeping this run's implementation
        (foreach/fused/capturable): a checkpoint from another device carries its own flags,
        and e.g. a CPU run's foreach=True next to CUDA's fused=True is refused by Adam."""
        for opt, state in ((self.opt_g, state_g), (self.opt_d, state_d)):
            impl = [{k: g[k] for k in _IMPL_FLAGS if k in g} for g in opt.param_groups]
            opt.load_state_dict(state)
            for group, flags in zip(opt.param_groups, impl):
                for k in _IMPL_FLAGS:
                    group.pop(k, None)
                group.update(flags)
                on_device = bool(flags.get("fused") or flags.get("capturable"))
                for p in group["params"]:  # Adam keeps step on the device exactly when fused/capturable
                    st = opt.state.get(p, {})
                    if torch.is_tensor(st.get("step")):
                        st["step"] = st["step"].to(p.device if on_device else "cpu", torch.float32)

    def wrap(self, G_step, D_step, D_for_g, distributed: bool) -> None:
        """Run through these callables from now on; ``distributed``: D_step is DDP-wrapped
        (the separate-pass D step then accumulates its first backward locally)."""
        self.G_step, self.D_step, self.D_for_g, self.distributed = G_step, D_step, D_for_g, distributed

    def autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=self.autocast_cache)
        return contextlib.nullcontext()

    def __call__(self, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Update D, then G; returns (loss_d, loss_g, mean D(x), mean D(G(z))), detached."""
        with self.autocast():
            fake = self.G_step(z)  # 3 x S x S in [-1, 1], reused by the G step below

        # (1) update D: maximize log D(x) + log(1 - D(G(z)))
        self.opt_d.zero_grad(set_to_none=True)
        d_pass = self._d_joint if self.joint else self._d_separate
        out_real, out_fake, loss_real, loss_fake = d_pass(real, fake.detach())
        self.opt_d.step()

        # (2) update G: maximize log D(G(z)) (non-saturating loss); D's weights get no
        # gradients (none computed, none accumulated, D's DDP hooks stay quiet).
        self.opt_g.zero_grad(set_to_none=True)
        with frozen(self.D):
            with self.autocast():
                out_g = self.D_for_g(fake)
                loss_g = F.binary_cross_entropy_with_logits(out_g.float(), self.ones)
            loss_g.backward()
        self.opt_g.step()

        loss_d = (loss_real + loss_fake).detach()
        return (loss_d, loss_g.detach(), torch.sigmoid(out_real.detach().float()).mean(),
                torch.sigmoid(out_fake.detach().float()).mean())

    def _d_joint(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # One pass over cat(real, fake); each half gets its own BN statistics, as in two passes.
        # real takes fake's dtype: autocast would cast it to that at D's first layer anyway.
        with batch_splits(self.D, 2), self.autocast():
            out_real, out_fake = self.D_step(torch.cat([real.to(fake.dtype), fake])).float().chunk(2)
            loss_real = F.binary_cross_entropy_with_logits(out_real, self.ones)
            loss_fake = F.binary_cross_entropy_with_logits(out_fake, self.zeros)
        (loss_real + loss_fake).backward()
        return out_real, out_fake, loss_real, loss_fake

    def _d_separate(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # The paper's two passes; under DDP the first backward accumulates locally and the
        # second all-reduces both.
        no_sync = self.D_step.no_sync() if self.distributed else contextlib.nullcontext()
        with no_sync:
            with self.autocast():
                out_real = self.D_step(real)
                loss_real = F.binary_cross_entropy_with_logits(out_real.float(), self.ones)
            loss_real.backward()
        with self.autocast():
            out_fake = self.D_step(fake)
            loss_fake = F.binary_cross_entropy_with_logits(out_fake.float(), self.zeros)
        loss_fake.backward()
        return out_real, out_fake, loss_real, loss_fake
