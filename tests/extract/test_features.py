"""features.py: hooks against a hand-written forward, for every architecture and BN mode."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_features.nets.architectures import ARCHITECTURES, Discriminator, FeatureInfo, build
from dcgan_features.core.errors import UserError
from dcgan_features.extract.hooks import (FeatureExtractor, PoolHook, bn_state, check_grid, extract_features,
                                     parse_layers, recompute_bn_stats)

NAMES6 = ["d1", "d2", "d3", "d4", "d5", "d6"]


# --------------------------------------------------------------------- the oracle


def _bn_parts(block):
    conv = block[0]
    bn = block[1] if isinstance(block[1], nn.BatchNorm2d) else None
    return conv, bn


def oracle(D, x, grid=4, bn="running", stats=None):
    """Explicit block-by-block forward with functional ops; `stats` overrides BN (mean, var)."""
    feats, h = [], x
    for name, block in D.blocks.items():
        conv, norm = _bn_parts(block)
        h = F.conv2d(h, conv.weight, None, conv.stride, conv.padding)
        if norm is not None:
            if bn == "batch":
                mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
            elif stats is not None:
                mean, var = stats[name]
            else:
                mean, var = norm.running_mean, norm.running_var
            h = (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + norm.eps)
            h = h * norm.weight[:, None, None] + norm.bias[:, None, None]
        h = torch.where(h >= 0, h, 0.2 * h)
        feats.append(F.adaptive_max_pool2d(h, grid).flatten(1))
    return torch.cat(feats, 1)


def oracle_stats(D, batches):
    """Population statistics as the average over batches of batch mean / unbiased batch var."""
    sums: dict = {}
    for x in batches:
        h = x
        for name, block in D.blocks.items():
            conv, norm = _bn_parts(block)
            h = F.conv2d(h, conv.weight, None, conv.stride, conv.padding)
            if norm is not None:
                mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
                m, v = sums.get(name, (0, 0))
                sums[name] = (m + mean, v + h.var((0, 2, 3), unbiased=True))
                h = (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + norm.eps)
                h = h * norm.weight[:, None, None] + norm.bias[:, None, None]
            h = torch.where(h >= 0, h, 0.2 * h)
    return {k: (m / len(batches), v / len(batches)) for k, (m, v) in sums.items()}


def _model(arch, seed=0):
    _, D = build(arch, width=2, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for m in D.modules():  # stored statistics far from 0/1, so each mode is told apart
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    size = ARCHITECTURES[arch].image_size
    x = torch.rand(6, 3, size, size, generator=g) * 2 - 1
    return D, x


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_matches_oracle(arch, bn):
    D, x = _model(arch)
    before = {k: v.clone() for k, v in bn_state(D).items()}
    with FeatureExtractor(D, "all", 4, bn) as fx:
        got = fx(x)
    torch.testing.assert_close(got, oracle(D, x, 4, bn), rtol=1e-5, atol=1e-6)
    assert got.shape[1] == D.feature_dim(4)
    for k, v in bn_state(D).items():  # neither mode touches the stored statistics
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_recompute_matches_oracle(arch):
    D, x = _model(arch)
    size = ARCHITECTURES[arch].image_size
    train = torch.rand(14, 3, size, size, generator=torch.Generator().manual_seed(5)) * 2 - 1
    batches = list(train.split(4))  # 4, 4, 4, 2: the short last batch counts as one batch
    want_stats = oracle_stats(D, batches)
    D.train()
    assert recompute_bn_stats(D, batches) == 4
    assert D.training  # the caller's mode is back
    for name, (mean, var) in want_stats.items():
        torch.testing.assert_close(D.blocks[name][1].running_mean, mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(D.blocks[name][1].running_var, var, rtol=1e-4, atol=1e-6)
    assert D.blocks.d2[1].momentum == 0.1  # restored after the cumulative average
    with FeatureExtractor(D, "all", 4, "running") as fx:
        got = fx(x)
    torch.testing.assert_close(got, oracle(D, x, 4, stats=want_stats), rtol=1e-4, atol=1e-5)


def test_layer_subset_and_grid_follow_block_order():
    D, x = _model("imagenet32")
    full = oracle(D, x, 2)
    dims = [fi.pooled_dim(2) for fi in D.feature_info]
    offs = [sum(dims[:i]) for i in range(len(dims))]
    got = extract_features(D, x, "d5,d2", grid=2)
    want = torch.cat([full[:, offs[1]:offs[1] + dims[1]], full[:, offs[4]:offs[4] + dims[4]]], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_imagenet32_width128_dim_28672():
    _, D = build("imagenet32", width=128, seed=0)
    with FeatureExtractor(D) as fx:
        out = fx(torch.zeros(1, 3, 32, 32))
        assert fx.dim == 28672 and out.shape == (1, 28672)
        assert fx.layer_dims == [2048, 2048, 4096, 4096, 8192, 8192]


def test_inplace_activation_trap():
    """A hook that keeps a reference sees the next block's in-place op; ours pooled at once."""
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)),
              nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, 1, 1, bias=False))]
    D = Discriminator(blocks, [FeatureInfo("d1", 4, 8), FeatureInfo("d2", 4, 8)], nn.Identity())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():  # grid = spatial size: pooling cannot hide the negative part
        want = F.adaptive_max_pool2d(F.leaky_relu(blocks[0][0](x), 0.2), 8).flatten(1)

    kept = {}
    handle = D.blocks.d1.register_forward_hook(lambda m, i, o: kept.setdefault("d1", o))
    with torch.no_grad():
        D(x)
    handle.remove()
    naive = F.adaptive_max_pool2d(kept["d1"], 8).flatten(1)
    assert not torch.allclose(naive, want)  # the trap is real: d2's ReLU rewrote d1's output
    assert (naive >= 0).all()

    got = extract_features(D, x, "all", grid=8)[:, :256]
    torch.testing.assert_close(got, want)


def test_pool_hook_on_any_module_captures_pre_activation():
    D, x = _model("dcgan32")
    conv, norm = D.blocks.d2[0], D.blocks.d2[1]
    D.eval()
    with torch.no_grad():
        h = D.blocks.d1(x.clone())
        want = F.adaptive_max_pool2d(norm(conv(h)), 4).flatten(1)
        hook = PoolHook(4, 0, want.shape[1])
        hook.out = torch.empty_like(want)
        handle = norm.register_forward_hook(hook)
        D(x)
        handle.remove()
    torch.testing.assert_close(hook.out, want)  # BN output, before the in-place LeakyReLU


def test_modes_and_hooks_restored_even_after_an_error():
    D, x = _model("svhn32")
    D.eval()
    D.blocks.d2.train()  # a mixed state must come back exactly
    modes = {n: m.training for n, m in D.named_modules()}
    with pytest.raises(ValueError, match="boom"):
        with FeatureExtractor(D, "all", 4, "batch") as fx:
            assert D.blocks.d2[1].training and not D.blocks.d2[1].track_running_stats
            assert all(len(b._forward_hooks) == 1 for b in D.blocks.values())
            fx(x)
            raise ValueError("boom")
    assert {n: m.training for n, m in D.named_modules()} == modes
    assert all(m.track_running_stats for m in D.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(len(m._forward_hooks) == 0 for m in D.modules())
    with pytest.raises(RuntimeError, match="with"):
        FeatureExtractor(D)(x)  # outside the context manager: no hooks, refuse


def test_parse_layers():
    assert parse_layers("all", NAMES6) == NAMES6
    assert parse_layers("d3,d1", NAMES6) == ["d1", "d3"]
    assert parse_layers("d2..d4", NAMES6) == ["d2", "d3", "d4"]
    assert parse_layers(["d6", "d6"], NAMES6) == ["d6"]
    with pytest.raises(UserError, match=r"^block 'd7' not in model; available: d1..d6$"):
        parse_layers("d1,d7", NAMES6)
    with pytest.raises(UserError, match="backwards"):
        parse_layers("d4..d2", NAMES6)
    with pytest.raises(UserError, match="no layer"):
        parse_layers(" , ", NAMES6)


def test_grid_larger_than_a_block_names_it():
    _, D = build("imagenet32", width=2, seed=0)
    check_grid(D, ["d1", "d2"], 16)
    with pytest.raises(UserError, match=r"grid 5 is larger than block d6's 4x4 output"):
        check_grid(D, NAMES6, 5)


@pytest.mark.parametrize("shape,grid", [((2, 3, 16, 16), 4), ((2, 3, 12, 12), 3), ((2, 3, 10, 10), 3), ((1, 2, 4, 4), 4)])
def test_grid_max_pool_is_adaptive_max_pool(shape, grid):
    from dcgan_features.extract.hooks import grid_max_pool

    x = torch.randn(shape)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(grid_max_pool(t, grid), F.adaptive_max_pool2d(t, grid))


def test_plain_forward_inside_the_block_captures_nothing():
    D, x = _model("dcgan32")
    with FeatureExtractor(D) as fx:
        D(x)  # the caller's own forward: hooks fire but have nowhere to write
        assert fx(x).shape == (6, D.feature_dim(4))
