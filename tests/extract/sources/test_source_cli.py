"""`extract --model SPEC` and `--list-layers` through the CLI: files, tables, one-line errors."""

import pytest

from dcgan_features.extract.store import FeatureFile, partial_path

TINY = ["--dataset", "synthetic", "--limit", "8", "--batch-size", "4", "--device", "cpu"]
USER_MODEL = """
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                         nn.Flatten(), nn.Linear(8 * 16 * 16, 2))
"""


def test_model_spec_writes_the_file_and_records_it(tmp_path, run_cli):
    out = tmp_path / "p.h5"
    code, stdout, err = run_cli("extract", "--model", "pixels", *TINY, "--out", out)
    assert code == 0, err
    assert "wrote train 8 + test 8 rows of pixels features" in stdout
    with FeatureFile(out) as ff:
        assert ff.meta["source"] == "pixels" and ff.dim == 3072


def test_list_layers_of_a_user_file(tmp_path, run_cli):
    (tmp_path / "net.py").write_text(USER_MODEL)
    code, stdout, err = run_cli("extract", "--model", f"python:{tmp_path / 'net.py'}:make", "--list-layers")
    assert code == 0, err
    lines = [ln.split() for ln in stdout.strip().splitlines()]
    assert lines[0][:2] == ["name", "type"]
    assert lines[1:] == [["0", "Conv2d", "4x32x32"], ["1", "ReLU", "4x32x32", "(all:", "0)"],
                         ["2", "Conv2d", "8x16x16"], ["3", "Flatten", "2048"], ["4", "Linear", "2"]]


@pytest.mark.parametrize("args, match", [
    (["--model", "vgg:16"], "error: unknown model kind 'vgg'"),
    (["--model", "pixels", "--kmeans-from", "x.h5"], "error: --kmeans-from does not apply to --model pixels"),
    (["--model", "random:dcgan32", "--arch", "dcgan32"], "--arch goes with --random-init"),
    (["--model", "python:NET:make", "--layer", "9"], "error: --layer '9' matches no module of the model"),
    (["--model", "python:NET:make", "--layer", "4"], "error: layer 4 outputs (2, 2), not a 4-d"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, run_cli, args, match):
    (tmp_path / "net.py").write_text(USER_MODEL)
    out = tmp_path / "x.h5"
    args = [a.replace("NET", str(tmp_path / "net.py")) for a in args]
    code, _, err = run_cli("extract", *args, *TINY, "--out", out)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and match in lines[-1], err
    assert not out.exists() and not partial_path(out).exists()
