"""Pretrained sources keep what they were trained with: own BN statistics by default, named weights from
torch's hub cache (never downloaded), and ``--layer all`` taking the layers wide enough for the grid."""

import json

import h5py
import numpy as np
import pytest
import torch
import torchvision

from tests.cli_checks import same_file


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch's hub cache in tmp_path, holding resnet18's IMAGENET1K_V1 file: seeded weights with BN statistics
    of their own (running mean 0.5, var 2), saved as torch.hub would save the real one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
        bn.running_mean.fill_(0.5), bn.running_var.fill_(2.0)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    path = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    torch.save(m.state_dict(), path)
    return m


ARGS = ["--model", "torchvision:resnet18", "--dataset", "synthetic", "--limit", "16", "--device", "cpu"]


def test_named_weights_load_from_the_hub_cache_and_keep_their_statistics(run_cli, tmp_path, hub):
    code, _, err = run_cli("extract", *ARGS, "--weights", "IMAGENET1K_V1", "--out", tmp_path / "own.h5")
    assert code in (0, None), err
    assert "keeping torchvision:resnet18's own running statistics" in err
    with h5py.File(tmp_path / "own.h5", "r") as f:
        assert f.attrs["bn_mode"] == "running"
    code, _, err = run_cli("extract", *ARGS, "--weights", "IMAGENET1K_V1", "--bn", "running", "--out", tmp_path / "r.h5")
    assert code in (0, None), err
    same_file(tmp_path / "own.h5", tmp_path / "r.h5")  # the default is exactly --bn running
    code, _, err = run_cli("extract", *ARGS, "--weights", "IMAGENET1K_V1", "--bn", "recompute",
                           "--out", tmp_path / "re.h5")
    assert code in (0, None), err
    with h5py.File(tmp_path / "own.h5", "r") as a, h5py.File(tmp_path / "re.h5", "r") as b:
        assert b.attrs["bn_mode"] == "recompute"
        assert not np.array_equal(a["train/features"][...], b["train/features"][...])


def test_a_random_init_recomputes_and_a_missing_cache_file_is_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    line = run_cli.error("extract", *ARGS, "--weights", "IMAGENET1K_V1", "--out", tmp_path / "x.h5",
                         match="not in torch's hub cache")
    assert "https://download.pytorch.org/models/resnet18-" in line and not (tmp_path / "x.h5").exists()
    code, _, err = run_cli("extract", *ARGS, "--out", tmp_path / "rand.h5")
    assert code in (0, None) and "own running statistics" not in err, err
    with h5py.File(tmp_path / "rand.h5", "r") as f:
        assert f.attrs["bn_mode"] == "recompute"  # init statistics (0, 1) are no model's own


def test_layer_all_at_32_px_takes_the_wide_layers_and_says_which_it_skipped(run_cli, tmp_path):
    code, _, err = run_cli("extract", *ARGS, "--out", tmp_path / "f.h5")
    assert code in (0, None), err
    # resnet18 at 32x32: layer1 maps are 8x8, layer2 4x4, layer3 2x2 and layer4 1x1 (torchvision's strides)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        layers = json.loads(f.attrs["layers"])
    assert layers[0] == "conv1" and all(not n.startswith(("layer3", "layer4")) for n in layers)
    assert any(n.startswith("layer2") for n in layers)
    line = next(ln for ln in err.splitlines() if "skipped" in ln)
    assert "skipped 10 narrower than --grid 4" in line and "layer4.1.conv2" in line
