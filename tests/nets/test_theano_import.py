"""import-theano: the mapping against the authors' forward pass written in numpy/scipy,
the released SVHN weights end to end, and every bad-input case through the CLI."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import signal

from dcgan_features.nets import checkpoint
from dcgan_features.look.generate import prepare
from dcgan_features.nets.theano_import import convert_folder, joblib_listing, write_random_params

REFERENCE = Path("/work/shared/reference")
SVHN_DIR = REFERENCE / "svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb"
needs_svhn = pytest.mark.skipif(not SVHN_DIR.is_dir(), reason=f"released SVHN weights not found in {SVHN_DIR}")


# ------------------------------------------------ the authors' model, in numpy/scipy
# Written from Newmu/dcgan_code (imagenet/load_pretrained.py, lib/ops.py): dnn_conv and
# deconv in their default conv_mode='conv' (true convolution), batchnorm with batch
# statistics and e=1e-8, LeakyRectify(0.2). Independent of the torch code under test.


def np_conv(x, w, stride, pad):
    """dnn_conv: true convolution (scipy.signal.convolve flips the kernel), then subsample."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = []
    for img in xp:
        # convolve also flips the channel axis; pre-flipping it pairs channel c with c
        maps = [signal.convolve(img, wo[::-1], mode="valid")[0] for wo in w]
        out.append(np.stack(maps)[:, ::stride, ::stride])
    return np.stack(out)


def np_deconv(x, w, stride, pad):
    """lib/ops.deconv: the gradient (adjoint) of np_conv for an output of size input*stride.

    np_conv computes y[o, i, j] = sum_{c,a,b} xpad[c, i*s + a, j*s + b] * w[o, c, k-1-a, k-1-b]
    (true convolution), so its adjoint scatters y[o, i, j] * w[o, c, k-1-a, k-1-b] back.
    """
    n, _, h, wd = x.shape
    k = w.shape[-1]
    H, W = h * stride, wd * stride
    out = np.zeros((n, w.shape[1], H + 2 * pad + k, W + 2 * pad + k), x.dtype)
    for a in range(k):
        for b in range(k):
            contrib = np.einsum("nohw,oc->nchw", x, w[:, :, k - 1 - a, k - 1 - b])
            out[:, :, a:a + h * stride:stride, b:b + wd * stride:stride] += contrib
    return out[:, :, pad:pad + H, pad:pad + W]


def np_bn(x, g, b):
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    u = x.mean(axes).reshape(shape)
    s = ((x - u) ** 2).mean(axes).reshape(shape)
    return (x - u) / np.sqrt(s + 1e-8) * g.reshape(shape) + b.reshape(shape)


def relu(x):
    return np.maximum(x, 0)


def lrelu(x):
    return 0.6 * x + 0.4 * np.abs(x)


def np_gen(z, p, ngf4, convs):
    """convs: (stride, pad) of each deconv after the linear layer; p the arrays in file order."""
    h = relu(np_bn(z @ p[0], p[1], p[2])).reshape(len(z), ngf4, 4, 4)
    i = 3
    for j, (s, pad) in enumerate(convs):
        h = np_deconv(h, p[i], s, pad)
        if j + 1 < len(convs):
            h, i = relu(np_bn(h, p[i + 1], p[i + 2])), i + 3
    return np.tanh(h)


def np_discrim(x, p, convs):
    h = lrelu(np_conv(x, p[0], *convs[0]))
    for j, (s, pad) in enumerate(convs[1:]):
        h = lrelu(np_bn(np_conv(h, p[1 + 3 * j], s, pad), p[2 + 3 * j], p[3 + 3 * j]))
    return (h.reshape(len(x), -1) @ p[-1]).reshape(-1)  # logit: the sigmoid is left out


def load_arrays(folder, epoch, kind, n):
    return [np.load(folder / f"{epoch}_{kind}_params.jl_{i:02d}.npy").astype(np.float64) for i in range(1, n + 1)]


def torch_forward(G, D, z, x):
    G, D = prepare(G, "batch"), prepare(D, "batch")
    with torch.no_grad():
        return G(torch.from_numpy(z).float()).double().numpy(), D(torch.from_numpy(x).float()).double().numpy()


def imagenet32_arrays(w, rng):
    """Arrays of the paper's imagenet32 model at width w, shapes written out from DESIGN section 2."""
    r = lambda *s: (0.2 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    gb = lambda c: [(1 + r(c)).astype(np.float32), r(c)]  # noqa: E731
    gen = [r(256, 4 * w * 16), *gb(4 * w * 16)]
    for cin, cout in [(4 * w, 4 * w), (4 * w, 2 * w), (2 * w, 2 * w), (2 * w, w), (w, w)]:
        gen += [r(cin, cout, 3, 3), *gb(cout)]
    gen.append(r(w, 3, 3, 3))
    dis = [r(w, 3, 3, 3)]
    for cin, cout in [(w, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]:
        dis += [r(cout, cin, 3, 3), *gb(cout)]
    dis.append(r(4 * w * 16, 1))
    return gen, dis


def write_layout(folder, epoch, gen, dis, listing=True):
    for kind, arrays in (("gen", gen), ("discrim", dis)):
        names = [f"{epoch}_{kind}_params.jl_{i:02d}.npy" for i in range(1, len(arrays) + 1)]
        for name, a in zip(names, arrays):
            np.save(folder / name, a)
        if listing:
            (folder / f"{epoch}_{kind}_params.jl").write_bytes(joblib_listing(names))


def test_imagenet32_mapping_matches_the_authors_forward(tmp_path):
    rng = np.random.default_rng(0)
    gen, dis = imagenet32_arrays(2, rng)
    write_layout(tmp_path, 30, gen, dis)
    G, D, info = convert_folder(tmp_path, "imagenet32")
    assert (info.width, info.nz, info.epoch) == (2, 256, 30)
    z = rng.uniform(-1, 1, (5, 256))
    x = rng.uniform(-1, 1, (5, 3, 32, 32))
    g_convs = [(2, 1), (1, 1), (2, 1), (1, 1), (2, 1), (1, 1)]
    d_convs = [(1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (2, 1)]
    want_x = np_gen(z, [a.astype(np.float64) for a in gen], 8, g_convs)
    want_y = np_discrim(x, [a.astype(np.float64) for a in dis], d_convs)
    got_x, got_y = torch_forward(G, D, z, x)
    assert got_x.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(got_x, want_x, atol=2e-5)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-4, atol=1e-4)


def test_reference_deconv_is_the_adjoint_of_the_reference_conv():
    # <deconv(y), x> == <y, conv(x)>: what GpuDnnConvGradI computes, for both layouts
    rng = np.random.default_rng(2)
    for k, s, pad, size in [(5, 2, 2, 8), (3, 2, 1, 8), (3, 1, 1, 6)]:
        w = rng.standard_normal((4, 3, k, k))
        x = rng.standard_normal((2, 3, size, size))
        y = rng.standard_normal((2, 4, size // s, size // s))
        conv = np_conv(x, w, s, pad)
        assert conv.shape == y.shape
        np.testing.assert_allclose((np_deconv(y, w, s, pad) * x).sum(), (y * conv).sum(), rtol=1e-10)


def test_unflipped_kernels_would_not_match():
    # the reference is sensitive to the flip: without it the conv outputs differ
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1)
    flipped = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w).flip(-2, -1), stride=2, padding=1)
    np.testing.assert_allclose(flipped.numpy(), np_conv(x, w, 2, 1), atol=1e-10)
    assert not np.allclose(conv.numpy(), np_conv(x, w, 2, 1), atol=1e-3)


def test_svhn32_layout_round_trip_through_cli(tmp_path, run_cli):
    write_random_params(tmp_path, "svhn32", width=2, epoch=7, seed=3)
    write_random_params(tmp_path, "svhn32", width=2, epoch=12, seed=4)
    out = tmp_path / "m.pt"
    code, stdout, err = run_cli("import-theano", tmp_path, "--arch", "svhn32", "--out", out)
    assert code == 0, err
    assert "width 2 z=100 epoch 12" in stdout  # the highest epoch by default
    G, D, ckpt = checkpoint.load_models(out)
    assert ckpt["imported"] is True and ckpt["config"]["epoch"] == 12
    assert ckpt["trained_on"] == "svhn" == checkpoint.trained_on(ckpt)  # what the authors trained it on
    assert ckpt["config"]["gen_files"][0] == "12_gen_params.jl_01.npy"
    assert all(m.eps == 1e-8 for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.BatchNorm2d))
    gen = load_arrays(tmp_path, 12, "gen", 10)
    dis = load_arrays(tmp_path, 12, "discrim", 8)
    rng = np.random.default_rng(5)
    z, x = rng.standard_normal((4, 100)), rng.uniform(-1, 1, (4, 3, 32, 32))
    got_x, got_y = torch_forward(G, D, z, x)
    np.testing.assert_allclose(got_x, np_gen(z, gen, 8, [(2, 2)] * 3), atol=2e-5)
    np.testing.assert_allclose(got_y, np_discrim(x, dis, [(2, 2)] * 3), rtol=1e-4, atol=1e-4)
    code, stdout, _ = run_cli("import-theano", tmp_path, "--arch", "svhn32", "--epoch", 7, "--out", out)
    assert code == 0 and "epoch 7" in stdout


# ------------------------------------------------------------ the released weights


def pixel_correlation(x):
    a, b = x[..., :, :-1].reshape(-1), x[..., :, 1:].reshape(-1)
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def check_svhn_model(G, D):
    """The released SVHN model's behaviour, whichever way it was loaded: D tells its samples from noise,
    and the samples look like images."""
    G, D = prepare(G, "batch"), prepare(D, "batch")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 100, generator=g)
    noise = torch.rand(64, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        x = G(z)
        fake, rand = D(x).mean().item(), D(noise).mean().item()
    # measured: about -7.5 for samples, -18.9 for noise; the unflipped mapping gives +8.5 / +3.9
    assert fake > rand + 5, (fake, rand)
    # image-like: neighbouring pixels agree (about 0.97; noise about 0), and not saturated
    assert pixel_correlation(x) > 0.9 > 0.1 > abs(pixel_correlation(noise))
    assert 0.1 < x.std().item() < 0.6
    return z


def test_shipped_svhn_model_behaves_as_the_released_one():
    """The package's own svhn32_theano.pt (runs on a fresh clone: no reference folder needed)."""
    from dcgan_features.reproduce.config import PACKAGED

    G, D, ckpt = checkpoint.load_models(PACKAGED / "svhn32_theano.pt")
    assert (ckpt["arch"], ckpt["width"], ckpt["imported"], checkpoint.trained_on(ckpt)) == ("svhn32", 64, True, "svhn")
    assert all(m.eps == 1e-8 for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.BatchNorm2d))
    check_svhn_model(G, D)


@needs_svhn
def test_released_svhn_weights(tmp_path, run_cli):
    from dcgan_features.reproduce.config import PACKAGED

    out = tmp_path / "svhn.pt"
    code, stdout, err = run_cli("import-theano", SVHN_DIR, "--arch", "svhn32", "--out", out)
    assert code == 0, err
    assert "svhn32 width 64 z=100 epoch 200" in stdout
    G, D, ckpt = checkpoint.load_models(out)
    # the shipped model is this import of the released files
    Gp, Dp, _ = checkpoint.load_models(PACKAGED / "svhn32_theano.pt")
    for a, b in ((G, Gp), (D, Dp)):
        assert list(a.state_dict()) == list(b.state_dict())
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    z = check_svhn_model(G, D)
    G = prepare(G, "batch")

    # the whole G against the authors' forward in numpy on a small batch
    gen = load_arrays(SVHN_DIR, 200, "gen", 10)
    want = np_gen(z[:8].double().numpy(), gen, 256, [(2, 2)] * 3)
    with torch.no_grad():
        got = G(z[:8]).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


@needs_svhn
def test_released_listing_is_read():
    from dcgan_features.nets.theano_import import _listed_files

    names = _listed_files(SVHN_DIR / "200_gen_params.jl")
    assert names == [f"200_gen_params.jl_{i:02d}.npy" for i in range(1, 11)]


# ---------------------------------------------------------------------- bad input


@pytest.fixture
def layout(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    write_random_params(folder, "svhn32", width=2, epoch=20)
    return folder


def expect_error(run_cli, folder, *extra, arch="svhn32"):
    out = folder.parent / "out.pt"
    code, _, err = run_cli("import-theano", folder, "--arch", arch, "--out", out, *extra)
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(folder.parent.glob(".out.pt*"))
    return err


def test_missing_file_is_named(layout, run_cli):
    (layout / "20_gen_params.jl_05.npy").unlink()
    err = expect_error(run_cli, layout)
    assert "missing file" in err and "20_gen_params.jl_05.npy" in err


def test_wrong_shape_names_file_and_shapes(layout, run_cli):
    np.save(layout / "20_discrim_params.jl_05.npy", np.zeros((8, 4, 3, 3), np.float32))
    err = expect_error(run_cli, layout)
    assert "20_discrim_params.jl_05.npy (w3)" in err
    assert "expected shape (8, 4, 5, 5), found (8, 4, 3, 3)" in err


def test_unknown_epoch_lists_available(layout, run_cli):
    err = expect_error(run_cli, layout, "--epoch", "3")
    assert "epoch 3 not in" in err and "available epochs: 20" in err


def test_other_bad_inputs(layout, tmp_path, run_cli):
    err = expect_error(run_cli, layout, arch="imagenet32")
    assert "lists 10 arrays for epoch 20, but the imagenet32 generator has 19; is --arch imagenet32 right?" in err
    err = expect_error(run_cli, tmp_path / "nowhere")
    assert "not found" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no <epoch>_gen_params" in expect_error(run_cli, empty)
    (layout / "20_gen_params.jl_03.npy").write_bytes(b"not an array")
    assert "20_gen_params.jl_03.npy is not a readable .npy array" in expect_error(run_cli, layout)
    (layout / "20_discrim_params.jl_01.npy").write_bytes(b"not an array either")
    assert "20_discrim_params.jl_01.npy is not a readable .npy array" in expect_error(run_cli, layout)
    np.save(layout / "20_discrim_params.jl_01.npy", np.zeros((2, 3, 5), np.float32))
    assert "expected a 4-d array, found shape (2, 3, 5)" in expect_error(run_cli, layout)
    (layout / "20_discrim_params.jl").write_bytes(b"garbage")
    assert "20_discrim_params.jl is not a joblib listing" in expect_error(run_cli, layout)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payloads_in_npy_and_jl_never_run(layout, run_cli):
    """An object-array .npy (a pickle inside) and a .jl naming a callable: refused, nothing runs."""
    marker = layout.parent / "ran"
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    np.save(layout / "20_gen_params.jl_01.npy", arr, allow_pickle=True)
    assert "20_gen_params.jl_01.npy is not a readable .npy array" in expect_error(run_cli, layout)
    assert not marker.exists()
    write_random_params(layout, "svhn32", width=2, epoch=20)
    (layout / "20_gen_params.jl").write_bytes(pickle.dumps([_Payload(marker)], protocol=2))
    assert "20_gen_params.jl is not a joblib listing" in expect_error(run_cli, layout)
    assert not marker.exists()
    pickle.loads((layout / "20_gen_params.jl").read_bytes())  # the control: a plain load runs it
    assert marker.exists()
