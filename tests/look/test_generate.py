"""sample / interpolate / arithmetic: shapes, determinism by seed, BN modes, bad ids."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_features.nets import checkpoint
from dcgan_features.look import generate
from dcgan_features.nets.architectures import build, get_arch


def make_ckpt(path, imported=False, arch="svhn32", width=2):
    G, D = build(arch, width=width, seed=0)
    # give the BN layers non-trivial running statistics, as a trained checkpoint has
    G.train()
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(8, get_arch(arch).nz))
    checkpoint.save(path, checkpoint.make_payload(arch, width, G, D, imported=imported,
                                                  bn_eps=1e-8 if imported else None))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return make_ckpt(tmp_path_factory.mktemp("ck") / "trained.pt")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    return make_ckpt(tmp_path_factory.mktemp("ck") / "imported.pt", imported=True)


def png(path):
    return np.asarray(Image.open(path))


def test_sample_shapes_and_determinism(trained, tmp_path, run_cli):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for path, seed in zip(paths, (5, 5, 6)):
        code, out, err = run_cli("sample", trained, "--n", 16, "--seed", seed, "--out", path, "--device", "cpu")
        assert code == 0, err
    assert "bn running" in out  # trained checkpoints use their running statistics
    assert png(paths[0]).shape == (4 * 34 + 2, 4 * 34 + 2, 3)  # 4x4 tiles of 32 px, 2 px padding
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    code, _, _ = run_cli("sample", trained, "--n", 10, "--nrow", 5, "--out", paths[2])
    assert png(paths[2]).shape == (2 * 34 + 2, 5 * 34 + 2, 3)


def test_numbered_grid_is_deterministic_and_annotated(trained, tmp_path, run_cli):
    a, b, plain = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "p.png"
    for p in (a, b):
        assert run_cli("sample", trained, "--n", 4, "--seed", 1, "--numbered", "--out", p)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    run_cli("sample", trained, "--n", 4, "--seed", 1, "--out", plain)
    big, small = png(a), png(plain)
    assert big.shape[0] == 3 * small.shape[0]  # drawn 3x larger so the ids are readable
    # the id labels change pixels that the upscaled plain grid does not have
    up = np.kron(small, np.ones((3, 3, 1), np.uint8))
    assert big.shape[:2] == up.shape[:2] and (big[..., :3] != up).any()


def test_sample_tiles_are_the_seeds_latents(trained):
    L = generate.load_generator(trained)
    z, x = generate.sample(L.G, L.spec, 6, seed=9, nz=L.nz)
    # the oracle: svhn32's prior is N(0, 1) (DESIGN section 2), drawn on the CPU from a generator seeded 9
    assert torch.equal(z, torch.randn(6, 100, generator=torch.Generator().manual_seed(9)))
    with torch.no_grad():
        assert torch.allclose(x[3:4], L.G(z[3:4]), atol=1e-6)  # running stats: batch-independent
    assert x.shape == (6, 3, 32, 32) and x.abs().max() <= 1


def test_bn_modes(trained, imported, tmp_path, run_cli):
    L = generate.load_generator(imported)
    assert L.bn == "batch" and L.imported
    # batch statistics: a tile depends on the rest of its batch
    z = generate.latents(L.spec, 6, 0)
    assert not torch.allclose(generate.decode(L.G, z)[:3], generate.decode(L.G, z[:3]))
    code, _, err = run_cli("sample", imported, "--bn", "running", "--out", tmp_path / "x.png")
    assert code == 2 and "without running BN statistics" in err and "--bn batch" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run_cli("sample", trained, "--n", 8, "--out", a)
    code, out, _ = run_cli("sample", trained, "--n", 8, "--bn", "batch", "--out", b)
    assert code == 0 and "bn batch" in out and a.read_bytes() != b.read_bytes()


def test_interpolate_walks_between_end_points(trained, tmp_path, run_cli):
    L = generate.load_generator(trained)
    images = generate.interpolate(L.G, L.spec, rows=3, steps=5, seed=2, nz=L.nz)
    assert images.shape == (15, 3, 32, 32)
    ends = generate.latents(L.spec, 6, 2)
    with torch.no_grad():
        assert torch.allclose(images[0], L.G(ends[:1])[0], atol=1e-5)  # row 0 starts at z0
        assert torch.allclose(images[4], L.G(ends[1:2])[0], atol=1e-5)  # and ends at z1
        mid = L.G(((ends[4] + ends[5]) / 2)[None])[0]
        assert torch.allclose(images[12], mid, atol=1e-5)  # row 2, step 2 of 0..4: halfway
    out = tmp_path / "i.png"
    code, _, err = run_cli("interpolate", trained, "--rows", 3, "--steps", 5, "--seed", 2, "--out", out)
    assert code == 0, err
    assert png(out).shape == (3 * 34 + 2, 5 * 34 + 2, 3)
    code, _, err = run_cli("interpolate", trained, "--steps", 1, "--out", out)
    assert code == 2 and err.startswith("error: ")


def test_arithmetic_decodes_mean_a_minus_b_plus_c(trained):
    L = generate.load_generator(trained)
    fig = generate.arithmetic(L.G, L.spec, n=16, seed=4, a=[0, 1, 2], b=[3], c=[5, 15], neighbours=4, nz=L.nz)
    assert fig.cols == 5 and fig.images.shape == (20, 3, 32, 32)
    z = generate.latents(L.spec, 16, 4)
    y = z[[0, 1, 2]].mean(0) - z[3] + z[[5, 15]].mean(0)
    with torch.no_grad():
        assert torch.allclose(fig.images[3 * 5], L.G(y[None])[0], atol=1e-5)  # result row, column 0
        assert torch.allclose(fig.images[0], L.G(z[[0, 1, 2]].mean(0, keepdim=True))[0], atol=1e-5)
        assert torch.allclose(fig.images[1 + 5], L.G(z[3:4])[0], atol=1e-5)  # group b's sample
    assert (fig.images[5 + 2:5 + 5] == -1).all()  # blank tiles beside b's single sample
    neighbours = fig.images[16:20]
    assert not torch.allclose(neighbours[0], neighbours[1])
    again = generate.arithmetic(L.G, L.spec, n=16, seed=4, a=[0, 1, 2], b=[3], c=[5, 15], neighbours=4, nz=L.nz)
    assert torch.equal(again.images, fig.images)


def test_arithmetic_cli(imported, tmp_path, run_cli):
    out = tmp_path / "a.png"
    args = ["arithmetic", imported, "--n", 16, "--seed", 3, "--a", "1,2", "--b", "3", "--c", "4,5,6", "--out", out]
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "bn batch" in stdout and Image.open(out).format == "PNG"
    first = out.read_bytes()
    run_cli(*args)
    assert out.read_bytes() == first


@pytest.mark.parametrize("flag,value,message", [
    ("--a", "1,x", "--a must be comma-separated sample ids"),
    ("--b", "1.5", "--b must be comma-separated sample ids"),
    ("--c", "", "--c must be comma-separated sample ids"),
    ("--a", "16", "--a id 16 is out of range: a grid of --n 16 has ids 0..15"),
    ("--c", "2,-1", "--c id -1 is out of range"),
])
def test_arithmetic_bad_ids_fail_cleanly(trained, tmp_path, run_cli, flag, value, message):
    ids = {"--a": "0", "--b": "1", "--c": "2", flag: value}
    out = tmp_path / "a.png"
    code, _, err = run_cli("arithmetic", trained, "--n", 16, *[x for kv in ids.items() for x in kv], "--out", out)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not out.exists()


def test_bad_checkpoint_and_output_folder(trained, tmp_path, run_cli):
    code, _, err = run_cli("sample", tmp_path / "none.pt", "--out", tmp_path / "x.png")
    assert code == 2 and "not found" in err
    code, _, err = run_cli("sample", trained, "--out", tmp_path / "no" / "x.png")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_save_png_is_a_real_png():
    buf = generate.grid_array(torch.zeros(3, 3, 8, 8), nrow=3)
    assert buf.shape == (12, 32, 3) and buf.dtype == np.uint8
    assert int(buf[5, 5, 0]) == 128  # 0 in [-1, 1] -> mid grey
    img = Image.open(io.BytesIO(generate._annotated_png(buf, 8, 3, 3, True, None, None, 2).getvalue()))
    assert img.size == (64, 24)
