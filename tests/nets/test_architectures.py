from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_features.nets.architectures import ARCHITECTURES, build, feature_dim, get_arch, sample_z
from dcgan_features.core.errors import UserError

REFERENCE = Path(__file__).resolve().parents[3] / "shared/reference/svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb"


def pooled_forward_dim(D, image_size, grid=4):
    """Oracle: run the blocks by hand, pool each output, count the features."""
    x = torch.zeros(1, 3, image_size, image_size)
    total, shapes = 0, []
    with torch.no_grad():
        for block in D.blocks.values():
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
            total += F.adaptive_max_pool2d(x, grid).flatten(1).shape[1]
    return total, shapes


@pytest.mark.parametrize("name,dim", [("imagenet32", 28672), ("svhn32", 7168), ("dcgan64", 15360), ("dcgan32", 16 * 7 * 128)])
def test_feature_dim_metadata_and_real_forward_at_default_width(name, dim):
    assert feature_dim(name) == dim
    G, D = build(name)
    D.eval()
    total, shapes = pooled_forward_dim(D, get_arch(name).image_size)
    assert total == dim
    assert shapes == [(fi.channels, fi.spatial, fi.spatial) for fi in D.feature_info]


@pytest.mark.parametrize("width", [4, 16, 32])
def test_dcgan32_dim_is_112_w(width):
    assert feature_dim("dcgan32", width) == 16 * 7 * width


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_generator_and_discriminator_shapes(name):
    spec = get_arch(name)
    G, D = build(name, width=4)
    z = sample_z(spec, 3, generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, spec.nz)
    x = G(z)
    assert x.shape == (3, 3, spec.image_size, spec.image_size)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert D(x).shape == (3,)


def test_priors():
    g = torch.Generator().manual_seed(0)
    u = sample_z(get_arch("imagenet32"), 4000, generator=g)
    assert u.min() >= -1 and u.max() <= 1 and u.min() < -0.99 and abs(u.mean()) < 0.01
    n = sample_z(get_arch("svhn32"), 4000, generator=g)
    assert n.min() < -3 and abs(n.std() - 1) < 0.01


@pytest.mark.parametrize("name", ["imagenet32", "dcgan64"])
def test_init_statistics(name):
    G, D = build(name, width=32, seed=0)
    for model in (G, D):
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.weight.numel() > 2000:
                assert abs(m.weight.std().item() - 0.02) < 0.002, m
                assert abs(m.weight.mean().item()) < 0.002
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert abs(m.weight.mean().item() - 1) < 0.01
                assert m.weight.std().item() < 0.04
                assert torch.all(m.bias == 0)


def test_convs_have_no_bias_and_first_block_no_bn():
    for name in ARCHITECTURES:
        G, D = build(name, width=4)
        for m in list(G.modules()) + list(D.modules()):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                assert m.bias is None
        assert not any(isinstance(m, nn.BatchNorm2d) for m in D.blocks["d1"])
        assert all(any(isinstance(m, nn.BatchNorm2d) for m in b) for n, b in D.blocks.items() if n != "d1")


def theano_layout(model):
    """Our parameters in the order and layout of the authors' files (Linear stored (in, out))."""
    shapes = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            shapes.append(tuple(m.weight.shape[::-1]))
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            shapes.append(tuple(m.weight.shape))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            shapes += [tuple(m.weight.shape), tuple(m.bias.shape)]
    return shapes


# DESIGN section 9 (SVHN release) and the same layout for the ImageNet model (section 2).
SVHN_D = [(64, 3, 5, 5), (128, 64, 5, 5), (128,), (128,), (256, 128, 5, 5), (256,), (256,), (4096, 1)]
SVHN_G = [(100, 4096), (4096,), (4096,), (256, 128, 5, 5), (128,), (128,), (128, 64, 5, 5), (64,), (64,), (64, 3, 5, 5)]
IMAGENET_D = [(128, 3, 3, 3), (128, 128, 3, 3), (128,), (128,), (256, 128, 3, 3), (256,), (256,),
              (256, 256, 3, 3), (256,), (256,), (512, 256, 3, 3), (512,), (512,), (512, 512, 3, 3), (512,), (512,), (8192, 1)]
IMAGENET_G = [(256, 8192), (8192,), (8192,), (512, 512, 3, 3), (512,), (512,), (512, 256, 3, 3), (256,), (256,),
              (256, 256, 3, 3), (256,), (256,), (256, 128, 3, 3), (128,), (128,), (128, 128, 3, 3), (128,), (128,), (128, 3, 3, 3)]


@pytest.mark.parametrize("name,g_shapes,d_shapes", [("svhn32", SVHN_G, SVHN_D), ("imagenet32", IMAGENET_G, IMAGENET_D)])
def test_parameter_layout_matches_released_weights(name, g_shapes, d_shapes):
    with torch.device("meta"):
        G, D = build(name, init=False)
    assert theano_layout(G) == g_shapes
    assert theano_layout(D) == d_shapes


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="authors' SVHN weights not in ../shared/reference")
def test_svhn32_layout_matches_the_real_files():
    with torch.device("meta"):
        G, D = build("svhn32", init=False)
    for kind, model in (("gen", G), ("discrim", D)):
        files = sorted(REFERENCE.glob(f"200_{kind}_params.jl_*.npy"))
        assert [np.load(f, mmap_mode="r").shape for f in files] == theano_layout(model)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown architecture 'dcgan128'; available: imagenet32, svhn32, dcgan32, dcgan64"):
        get_arch("dcgan128")
    with pytest.raises(UserError, match="width"):
        build("dcgan32", width=0)
