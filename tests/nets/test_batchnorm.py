"""One D pass over cat(real, fake) with per-half BatchNorm == the paper's two D passes.

For every architecture at tiny width, in float64 (so "equal" means equal to round-off,
not to float32 noise): D's outputs, the loss, every D weight gradient, the gradient
reaching the fake images, and the BN running statistics after the pass.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from dcgan_features.nets.architectures import ARCHITECTURES, get_arch, sample_z
from dcgan_features.nets.batchnorm import SplitBatchNorm2d, batch_splits


def d_losses(D, real, fake, joint: bool):
    if joint:
        with batch_splits(D, 2):
            out_real, out_fake = D(torch.cat([real, fake])).chunk(2)
        loss = (F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
                + F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake)))
        loss.backward()
    else:
        out_real = D(real)
        loss_real = F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
        loss_real.backward()
        out_fake = D(fake)
        loss_fake = F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))
        loss_fake.backward()
        loss = loss_real + loss_fake
    return out_real, out_fake, loss


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_joint_d_pass_equals_two_passes(arch):
    spec = get_arch(arch)
    G, D = spec.build(2, seed=0)
    G, D = G.double(), D.double().to(memory_format=torch.channels_last)
    s = spec.image_size
    real = (torch.rand(6, 3, s, s, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    with torch.no_grad():
        fake0 = G(sample_z(spec, 6, generator=torch.Generator().manual_seed(2)).double())
    runs = {}
    for joint in (False, True):
        Dj = copy.deepcopy(D)
        fake = fake0.clone().requires_grad_(True)
        out_real, out_fake, loss = d_losses(Dj, real.contiguous(memory_format=torch.channels_last), fake, joint)
        runs[joint] = dict(out=torch.cat([out_real, out_fake]).detach(), loss=loss.detach(), fake_grad=fake.grad,
                           **{f"grad.{k}": p.grad for k, p in Dj.named_parameters()},
                           **{f"buf.{k}": b for k, b in Dj.named_buffers()})
    sep, joint = runs[False], runs[True]
    assert sep.keys() == joint.keys() and any(k.startswith("buf.") for k in sep)
    for k in sep:
        assert torch.allclose(sep[k].double(), joint[k].double(), rtol=1e-9, atol=1e-12), k
    assert torch.equal(sep["buf.blocks.d2.1.num_batches_tracked"], torch.tensor(2))  # two updates, as two passes

    # The test can fail: statistics over the whole cat(real, fake) batch give other outputs.
    Dw = copy.deepcopy(D)
    whole = Dw(torch.cat([real, fake0]))
    assert (whole - sep["out"]).abs().max() > 1e-3


def test_split_bn_is_plain_bn_outside_the_block_and_in_eval():
    bn = SplitBatchNorm2d(3)
    x = torch.randn(8, 3, 2, 2)
    ref = torch.nn.BatchNorm2d(3)
    assert torch.equal(bn(x), ref(x)) and bn.splits == 1
    with batch_splits(bn, 2):
        bn.eval()
        assert torch.equal(bn(x), ref.eval()(x))  # eval: running statistics, nothing to split
        bn.train()
        with pytest.raises(ValueError, match="cannot be split into 2"):
            bn(x[:7])
    assert bn.splits == 1  # restored on leaving the block
    assert list(bn.state_dict()) == list(ref.state_dict())  # checkpoints are interchangeable
