"""The eager step: what it dispatches (a deterministic op count), the joint D pass over
several steps, and the device-resident images."""

from __future__ import annotations

import collections
import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan_features.nets.architectures import get_arch, sample_z
from dcgan_features.train.step import DeviceImages, StepStats, TrainStep, to_unit_range

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from op_count import OpCounter  # noqa: E402  (the counter benchmarks/op_count.py writes its rows with)

CPU = torch.device("cpu")


def make_step(arch: str, joint: bool, batch: int = 8) -> tuple[TrainStep, object]:
    spec = get_arch(arch)
    G, D = spec.build(4, seed=0)
    G.to(memory_format=torch.channels_last)
    D.to(memory_format=torch.channels_last)
    return TrainStep(G, D, lr=2e-4, beta1=0.5, batch=batch, device=CPU, joint=joint), spec


def batches(spec, n: int, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        real = (torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
        yield real, sample_z(spec, batch, generator=g)


def count_step_ops(arch: str, joint: bool) -> collections.Counter:
    step, spec = make_step(arch, joint)
    (r0, z0), (r1, z1) = batches(spec, 2)
    step(r0, z0)  # Adam creates its state lazily at the first step: count a steady-state step
    with OpCounter() as c:
        step(r1, z1)
    return c.counts


# imagenet32 (6 G layers, 6 D blocks, 1 linear head): results/op_count.csv holds the count of
# the joint step and of the two-pass one (benchmarks/op_count.py). The budget leaves a little
# room for torch versions; a change that adds per-layer or per-parameter work to the step goes over it.
OP_BUDGET = 450


def test_one_eager_step_dispatches_a_bounded_number_of_ops():
    joint = count_step_ops("imagenet32", joint=True)
    total = sum(joint.values())
    assert total <= OP_BUDGET, (total, joint.most_common(15))
    # structure, exactly: G's 6 (transposed) convs + D's 6 in the joint pass + D's 6 in the G step
    assert joint["aten.convolution"] == 18 and joint["aten.convolution_backward"] == 18
    # no per-parameter optimizer loop: Adam's arithmetic is multi-tensor (2 optimizers)
    assert joint["aten.addcdiv_"] == 0 and joint["aten._foreach_addcdiv_"] == 2
    separate = count_step_ops("imagenet32", joint=False)
    assert separate["aten.convolution"] == 24  # the paper's two D passes: one more D forward
    assert total < sum(separate.values())


def test_joint_and_separate_d_passes_train_alike():
    # Five steps of each: the same mathematics, so the same weights up to float32 round-off.
    weights = {}
    for joint in (False, True):
        step, spec = make_step("dcgan32", joint)
        stats = StepStats(CPU)
        for real, z in batches(spec, 5):
            stats.add(step(real, z))
        weights[joint] = {k: v.detach().clone() for k, v in
                          [*step.G.state_dict().items(), *(("D." + k, v) for k, v in step.D.state_dict().items())]}
        weights[joint]["acc"] = stats.acc.clone()
    for k, v in weights[False].items():
        assert torch.allclose(v.double(), weights[True][k].double(), rtol=1e-4, atol=1e-5), k
    assert int(weights[True]["D.blocks.d2.1.num_batches_tracked"]) == 5 * 3  # real, fake, G step


def test_step_stats_find_the_first_bad_step():
    stats = StepStats(CPU, step=10)
    one = torch.tensor(1.0)
    stats.add((one, one, one, one))
    stats.add((one * float("nan"), one, one, one))
    stats.add((one, one * float("inf"), one, one))
    assert int(stats.first_bad) == 12 and int(stats.step_t) == 13
    stats.reset(20)
    assert int(stats.first_bad) == -1 and int(stats.step_t) == 20 and stats.acc.sum() == 0


@pytest.mark.parametrize("prenormalize", [True, False])
def test_device_images_gather_exactly_to_unit_range(prenormalize):
    u8 = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = DeviceImages(u8, CPU, torch.float32, prenormalize=prenormalize, chunk=16)  # several chunks
    assert images.prenormalized is prenormalize and len(images) == 50
    idx = torch.tensor([49, 0, 17, 17, 33])
    got = images.batch(idx)
    # the oracle: the rows idx of u8, mapped 0 -> -1 and 255 -> 1 in float64 by numpy
    want = u8.numpy()[idx.numpy()].astype(np.float64) / 127.5 - 1.0
    np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=2.4e-7)  # two float32 roundings (2 ulp at 1)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.dtype == torch.float32
    # the two storage paths agree bit for bit: CPU results do not depend on prenormalize
    assert torch.equal(got, to_unit_range(u8[idx]))
    bf16 = DeviceImages(u8, CPU, torch.bfloat16, prenormalize=prenormalize).batch(idx)
    assert bf16.dtype == torch.bfloat16
    np.testing.assert_allclose(bf16.double().numpy(), want, rtol=0, atol=2 ** -8)  # bfloat16: 8 bits of mantissa


def test_device_images_prenormalize_only_when_it_fits(monkeypatch):
    import dcgan_features.train.step as ts

    u8 = torch.zeros(10, 3, 8, 8, dtype=torch.uint8)  # 1920 bytes; 7680 as float32
    monkeypatch.setattr(ts, "free_memory", lambda device: 4 * 7680)
    assert DeviceImages(u8, CPU, torch.float32).prenormalized  # a quarter of free memory: fits
    monkeypatch.setattr(ts, "free_memory", lambda device: 4 * 7680 - 1)
    assert not DeviceImages(u8, CPU, torch.float32).prenormalized
    assert DeviceImages(u8, CPU, torch.float32).data.dtype == torch.uint8


def test_optimizer_state_from_another_device_keeps_this_runs_adam(tmp_path):
    # A GPU checkpoint's Adam groups say fused=True, capturable=True; loaded into a CPU run they
    # must not switch its foreach Adam (fused+foreach is refused; capturable needs CUDA).
    a, spec = make_step("dcgan32", joint=True)
    (r0, z0), (r1, z1) = batches(spec, 2)
    a(r0, z0)
    gpu_like = [copy.deepcopy(o.state_dict()) for o in (a.opt_g, a.opt_d)]
    for sd in gpu_like:
        for g in sd["param_groups"]:
            g.update(fused=True, capturable=True, foreach=None)
    b, _ = make_step("dcgan32", joint=True)
    b.G.load_state_dict(a.G.state_dict())
    b.D.load_state_dict(a.D.state_dict())
    b.load_optimizers(*gpu_like)
    assert all(g["foreach"] is True and not g["fused"] and not g["capturable"]
               for o in (b.opt_g, b.opt_d) for g in o.param_groups)
    a(r1, z1)
    b(r1, z1)
    assert all(torch.equal(p, q) for p, q in zip(a.D.parameters(), b.D.parameters()))
