"""The CLI surface shared by every command: listings, help, and the one-line error contract."""

import re

import pytest


def test_architectures_prints_blocks_and_totals(run_cli):
    code, out, _ = run_cli("architectures")
    assert code == 0
    totals = dict(re.findall(r"^(\w+): input.*?total feature dim: (\d+)", out, re.S | re.M))
    assert totals == {"imagenet32": "28672", "svhn32": "7168", "dcgan32": str(16 * 7 * 128), "dcgan64": "15360"}
    assert "d6:   512 x  4 x 4  -> pooled 4x4:   8192" in out
    assert "input 3x64x64" in out


def test_architectures_width(run_cli):
    _, out, _ = run_cli("architectures", "--width", "8")
    assert f"total feature dim: {16 * 7 * 8}" in out


def test_datasets_lists_every_dataset(run_cli, tmp_path):
    code, out, _ = run_cli("datasets", "--data-dir", str(tmp_path))
    assert code == 0
    for name in ("cifar10", "svhn", "fashion-mnist", "digits", "folder", "synthetic"):
        assert re.search(rf"^{name}\s", out, re.M), name
    assert re.search(r"^digits\s+present\s+train 1297, test 500", out, re.M)
    assert re.search(r"^cifar10\s+MISSING", out, re.M)


def test_usage_errors_are_one_line(run_cli):
    code, _, err = run_cli("architectures", "--grid", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    code, _, err = run_cli("no-such-command")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_help_shows_defaults(run_cli):
    code, out, _ = run_cli("architectures", "--help")
    assert code == 0 and "[default: 4; x>=1]" in out


@pytest.mark.parametrize("args, flag", [
    (["arithmetic", "m.pt", "--a", "1", "--b", "2", "--c", "3", "--neighbours", "100000", "--out", "a.png"],
     "--neighbours"),  # grew to 22 GB before the bound
    (["train", "--dataset", "digits", "--arch", "dcgan32", "--width", "100000", "--out", "r"], "--width"),
    (["train", "--dataset", "digits", "--arch", "dcgan32", "--nz", "10000000", "--out", "r"], "--nz"),
    (["train", "--dataset", "digits", "--arch", "dcgan32", "--batch-size", "10000000", "--out", "r"], "--batch-size"),
    (["extract", "--model", "pixels", "--dataset", "digits", "--image-size", "100000", "--out", "f.h5"],
     "--image-size"),
    (["extract", "--model", "pixels", "--dataset", "digits", "--batch-size", "10000000", "--out", "f.h5"],
     "--batch-size"),
    (["datasets", "--verify", "digits", "--image-size", "100000"], "--image-size"),
    (["probe", "digits", "--features", "f.h5", "--draws", "100000000"], "--draws"),
    (["quickstart", "--width", "100000"], "--width"),
])
def test_every_size_option_is_bounded(run_cli, tmp_path, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing is
    code, _, err = run_cli(*args)
    assert code == 2 and err.startswith("error: ") and flag in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
