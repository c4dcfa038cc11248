"""``visualize``: PNG + CSV whose rows are the brute-force top responses; bad input one line, nothing written."""

import csv

import pytest
import torch

from dcgan_features.nets import checkpoint
from dcgan_features.nets.architectures import build


def _ckpt(path, arch="dcgan32", imported=False, seed=3):
    G, D = build(arch, width=4, seed=seed)
    checkpoint.save(path, checkpoint.make_payload(arch, 4, G, D, imported=imported))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _ckpt(tmp_path_factory.mktemp("v") / "t.pt")


def test_visualize_writes_png_and_the_numbers(ckpt, tmp_path, run_cli):
    out = tmp_path / "v.png"
    code, stdout, err = run_cli("visualize", ckpt, "--dataset", "synthetic", "--limit", 60, "--n-maps", 3,
                                "--top-k", 4, "--batch-size", 16, "--device", "cpu", "--out", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 2 * 3 * 4 and {r["model"] for r in rows} == {"trained D", "random D"}
    first = [r for r in rows if r["model"] == "trained D" and r["map"] == "0"]
    acts = [float(r["activation"]) for r in first]
    assert acts == sorted(acts, reverse=True) and len({r["image"] for r in first}) == 4
    # the reported activation is the block's output at that image and position (BN re-estimated on the 60)
    from dcgan_features.data.registry import load
    from dcgan_features.extract.hooks import recompute_bn_stats

    _, D, _ = checkpoint.load_models(ckpt)
    x = load("synthetic", "train", image_size=32).images[:60].float() / 127.5 - 1
    recompute_bn_stats(D, [x[i:i + 16] for i in range(0, 60, 16)])
    with torch.no_grad():
        D.eval()
        a = D.blocks["d3"](D.blocks["d2"](D.blocks["d1"](x)))
    r = first[0]
    assert float(a[int(r["image"]), 0, int(r["y"]), int(r["x"])]) == pytest.approx(acts[0], rel=1e-4)
    assert float(a[:, 0].amax()) == pytest.approx(acts[0], rel=1e-4)


@pytest.mark.parametrize("args,match", [
    (["--block", "d9"], "D has no layer 'd9'; available: d1, d2, d3"),
    (["--maps", "0,99"], "--maps 99 is out of range"),
    (["--top-k", "5", "--limit", "3"], "--top-k 5 needs at least that many images"),
])
def test_bad_requests_are_one_line_and_write_nothing(ckpt, tmp_path, run_cli, args, match):
    out = tmp_path / "v.png"
    run_cli.error("visualize", ckpt, "--dataset", "synthetic", "--device", "cpu", "--out", out, *args, match=match)
    assert not out.exists() and not out.with_suffix(".csv").exists()


def test_block_without_maps_and_missing_bn_statistics(tmp_path, run_cli):
    svhn = _ckpt(tmp_path / "s.pt", arch="svhn32")  # its head is a Linear layer: no spatial maps
    run_cli.error("visualize", svhn, "--dataset", "digits", "--block", "head", "--out", tmp_path / "v.png",
                  match="block 'head' has no spatial maps")
    imp = _ckpt(tmp_path / "i.pt", imported=True)
    run_cli.error("visualize", imp, "--dataset", "digits", "--bn", "running", "--out", tmp_path / "v.png",
                  match="without BatchNorm statistics; use --bn recompute")


NET = '''
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1),
                         nn.ReLU())
'''


def test_any_model_with_conv_layers(tmp_path, run_cli):
    from dcgan_features.data.registry import load

    (tmp_path / "net.py").write_text(NET)
    spec = f"python:{tmp_path / 'net.py'}:make"
    out = tmp_path / "m.png"
    code, _, err = run_cli("visualize", "--model", spec, "--dataset", "synthetic", "--limit", 30, "--n-maps", 2,
                           "--top-k", 3, "--device", "cpu", "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert {r["block"] for r in rows} == {"3"}  # default: the activation after the last conv
    assert {r["model"] for r in rows} == {"given model", "random init"}
    torch.manual_seed(0)  # the python source builds its module under --seed 0
    net = __import__("runpy").run_path(str(tmp_path / "net.py"))["make"]()
    x = load("synthetic", "train", image_size=32).images[:30].float() / 127.5 - 1
    with torch.no_grad():
        a = net(x)
    for c in (0, 1):
        mine = [float(r["activation"]) for r in rows if r["model"] == "given model" and r["map"] == str(c)]
        want = a[:, c].flatten(1).amax(1).sort(descending=True).values[:3]
        assert torch.allclose(torch.tensor(mine), want, rtol=1e-4), (mine, want)
    run_cli.error("visualize", "--dataset", "synthetic", "--out", out, match="give either CHECKPOINT or --model")
