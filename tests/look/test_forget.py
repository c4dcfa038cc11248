"""forget: on a generator built so that map 0 alone paints a bright square at a known place,
the probe finds map 0 and dropping it removes the square; BOXES and layer errors are one line."""

import csv
import json

import pytest
import torch
from torch import nn

from dcgan_features.look.forget import fit_probe, capture, inside, with_and_without
from dcgan_features.look.layers import g_layers
from dcgan_features.nets.architectures import Generator, Reshape, build

NZ, C = 4, 4
CELL = (1, 2)  # the object's cell of the 4x4 map: image rows 8..15, columns 16..23
BOX = [16, 8, 24, 16]  # x0, y0, x1, y1


def object_painter() -> Generator:
    """Map 0 is 1.5 + 0.5 z0 at CELL and 0 elsewhere and paints +1 on its 8x8 patch; maps 1-3 are
    positive everywhere and paint a faint random texture."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(NZ, C * 16)
    conv = nn.ConvTranspose2d(C, 3, 8, stride=8)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(C * 16, NZ, generator=g) * 0.3)
        lin.bias.fill_(1.0)
        lin.weight[:16] = 0
        lin.bias[:16] = -100.0  # map 0 off everywhere ...
        at = CELL[0] * 4 + CELL[1]
        lin.weight[at, 0], lin.bias[at] = 0.5, 1.5  # ... but at CELL
        conv.weight.copy_(torch.randn(C, 3, 8, 8, generator=g) * 0.05)
        conv.weight[0] = 1.0
        conv.bias.fill_(-0.5)
    net = nn.Sequential(lin, nn.ReLU(), Reshape(C, 4, 4), conv, nn.Tanh())
    return Generator(net, NZ, z_as_image=False).eval().requires_grad_(False)


def brightness(images, box):
    m = inside((32, 32), 32, [tuple(box)])
    lum = images.mean(1)  # (n, 32, 32)
    return float(lum[:, m].mean()), float(lum[:, ~m].mean())


def test_probe_finds_the_painting_map_and_dropping_it_removes_the_object():
    G = object_painter()
    (name, (layer, shape)), = g_layers(G).items()
    assert name == "g1" and shape == (C, 4, 4)
    z = torch.randn(16, NZ, generator=torch.Generator().manual_seed(1))
    maps = capture(G, layer, z)
    boxes = {i: [tuple(BOX)] for i in range(16)}
    probe = fit_probe(maps, boxes, 32, C=1.0, holdout=0.25, drop=1, seed=0)
    assert probe.dropped == [0] and probe.heldout_accuracy == 1.0 and len(probe.heldout_images) == 4
    assert 0 in fit_probe(maps, boxes, 32, C=1.0, holdout=0.25, drop=None, seed=0).dropped

    before, after = with_and_without(G, layer, probe.dropped, torch.randn(8, NZ, generator=torch.Generator().manual_seed(2)))
    b_in, b_out = brightness(before, BOX)
    a_in, a_out = brightness(after, BOX)
    assert b_in - b_out > 0.5  # the square is there ...
    assert abs(a_in - a_out) < 0.1  # ... and gone: the box is as dark as the rest
    assert abs(a_out - b_out) < 1e-6  # nothing outside the box changed


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from dcgan_features.nets import checkpoint

    d = tmp_path_factory.mktemp("f")
    out = {}
    for name, imported in (("t", False), ("i", True)):
        G, D = build("svhn32", width=2, seed=0)
        checkpoint.save(d / f"{name}.pt", checkpoint.make_payload("svhn32", 2, G, D, imported=imported))
        out[name] = d / f"{name}.pt"
    return out


def _boxes(tmp_path, data):
    p = tmp_path / "b.json"
    p.write_text(json.dumps(data))
    return p


def test_cli_writes_picture_and_numbers(ckpts, tmp_path, run_cli):
    b = _boxes(tmp_path, {"n": 8, "seed": 2, "boxes": {"1": [[0, 0, 16, 16]], "4": [[8, 8, 32, 24]],
                                                       "6": [[4, 4, 12, 30]]}})
    out = tmp_path / "f.png"
    code, stdout, err = run_cli("forget", ckpts["t"], "--boxes", b, "--n", 8, "--seed", 2, "--drop", 2,
                                "--show", 4, "--device", "cpu", "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:4] == b"\x89PNG" and "dropped 2 of 2 maps of g3" in stdout
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    assert [r["dropped"] for r in rows] == ["1", "1"]
    (s,) = csv.DictReader((tmp_path / "f_summary.csv").open())
    assert s["layer"] == "g3" and s["dropped"] == "2"


@pytest.mark.parametrize("data,args,match", [
    ({"boxes": {"1": [[0, 0, 40, 10]]}}, [], "box [0, 0, 40, 10] is outside the 32x32 image"),
    ({"boxes": {"9": [[0, 0, 8, 8]]}}, ["--n", "8"], "sample id 9 is out of range: a grid of --n 8 has ids 0..7"),
    ({"n": 64, "seed": 3, "boxes": {"1": [[0, 0, 8, 8]]}}, ["--seed", "4"], "pass --seed 3"),
    ({"boxes": {"1": [[0, 0, 8, 8]]}}, ["--layer", "g7"], "G has no layer 'g7'; available: g1, g2, g3"),
    ({"boxes": {"1": [[0, 0, 8, 8]]}}, ["--layer", "net.0"], "G's layer 'net.0' has no spatial maps"),
    ({"boxes": {"1": [[0, 0, 8, 8]]}}, ["--drop", "9"], "--drop 9 exceeds the 2 maps of layer g3"),
])
def test_bad_input_is_one_line_before_any_work(ckpts, tmp_path, run_cli, data, args, match):
    out = tmp_path / "f.png"
    run_cli.error("forget", ckpts["t"], "--boxes", _boxes(tmp_path, data), "--out", out, *args, match=match)
    assert not out.exists() and not (tmp_path / "f.csv").exists()


def test_imported_weights_have_no_running_statistics(ckpts, tmp_path, run_cli):
    b = _boxes(tmp_path, {"boxes": {"1": [[0, 0, 8, 8]]}})
    run_cli.error("forget", ckpts["i"], "--boxes", b, "--bn", "running", "--out", tmp_path / "f.png",
                  match="without running BN statistics; use --bn batch")


def test_box_contrast_measures_the_object():
    from dcgan_features.look.forget_run import box_contrast

    G = object_painter()
    (layer, _), = g_layers(G).values()
    z = torch.randn(6, NZ, generator=torch.Generator().manual_seed(3))
    before, after = box_contrast(G, layer, [0], {i: [tuple(BOX)] for i in range(6)}, 32, z)
    imgs = G(z).mean(1)
    m = inside((32, 32), 32, [tuple(BOX)])
    want = float(torch.stack([(im[m] - im[~m].mean()).abs().mean() for im in imgs]).mean())
    assert before == pytest.approx(want, rel=1e-5) and before > 0.5 and after < 0.1
