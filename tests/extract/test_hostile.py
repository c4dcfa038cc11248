"""Hostile extract inputs of issue 23: each gives its answer or one line, never a traceback or a partial."""

import h5py
import numpy as np
import pytest

from dcgan_features.nets.architectures import ARCHITECTURES

DATA = ["--dataset", "digits", "--device", "cpu", "--limit", "6", "--splits", "test"]
BASE = ["extract", "--random-init", "--width", "2", *DATA]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_first_block_alone_under_default_bn_recompute(run_cli, tmp_path, arch):
    """d1 has no BatchNorm in any of the architectures: --bn recompute (the default) has nothing to
    re-estimate, so its features are exactly those of --bn running (no statistics used at all)."""
    files = {}
    for bn in ("recompute", "running"):
        out = tmp_path / f"{bn}.h5"
        code, _, err = run_cli(*BASE, "--arch", arch, "--layer", "d1", "--bn", bn, "--out", out)
        assert code == 0, err
        assert not (tmp_path / f"{bn}.h5.partial").exists()
        with h5py.File(out, "r") as f:
            files[bn] = f["test/features"][...]
    assert files["recompute"].shape[0] == 6
    np.testing.assert_array_equal(files["recompute"], files["running"])


@pytest.mark.parametrize("layers, said", [("d2,d2", "names 'd2' twice"), ("d1,,d2", "has an empty name"),
                                          ("d2,", "has an empty name"), (" , ", "no layer given")])
def test_repeated_or_empty_layer_names_one_line(run_cli, tmp_path, layers, said):
    run_cli.error(*BASE, "--arch", "dcgan32", "--layer", layers, "--out", tmp_path / "f.h5", match=said)
    assert list(tmp_path.iterdir()) == []


def test_repeated_or_empty_module_names_one_line():
    """The generic sources' --layer (module names or globs) follows the same rule."""
    from dcgan_features.core.errors import UserError
    from dcgan_features.extract.sources.generic import named_features

    with pytest.raises(UserError, match="names 'fc' twice"):
        named_features([], "fc,fc")
    with pytest.raises(UserError, match="has an empty name"):
        named_features([], "fc,")


# ------------------------------------------------------------------ --kmeans-from edited by hand, K bounds

@pytest.fixture(scope="module")
def kmeans_file(tmp_path_factory):
    from dcgan_features.extract.run import ExtractConfig, extract
    from dcgan_features.extract.sources.kmeans import KMeansSource
    from dcgan_features.extract.sources.kmeans_recipe import KMeansConfig

    path = tmp_path_factory.mktemp("kmeans") / "k.h5"
    extract(KMeansSource(3, config=KMeansConfig(n_patches=300, iterations=1)), path,
            ExtractConfig(dataset="synthetic", splits=("test",), limit=6, batch_size=3, device="cpu"))
    return path


def _edited(kmeans_file, tmp_path, edit):
    import shutil

    path = tmp_path / "edited.h5"
    shutil.copy(kmeans_file, path)
    with h5py.File(path, "r+") as f:
        edit(f["_source/kmeans"])
    return str(path)


def _replace(name, value):
    def edit(g):
        del g[name]
        g[name] = value
    return edit


@pytest.mark.parametrize("edit, said", [
    (_replace("mean", np.zeros(7, np.float32)), "has mean (7,), whitening"),
    (_replace("whitening", np.zeros((108, 200), np.float32)), "whitening (108, 200)"),
    (_replace("centroids", np.zeros((3, 5), np.float32)), "centroids (3, 5)"),
    (_replace("centroids", np.zeros((3,), np.float32)), "centroids (3,)"),
    (lambda g: g["centroids"].__setitem__(Ellipsis, np.nan), "has NaN or infinite values in its centroids"),
    (_replace("mean", np.zeros(108, np.int32)), "mean is not a float array"),
    (lambda g: g.attrs.__delitem__("norm_eps"), "missing or malformed attribute"),
    (lambda g: g.attrs.__setitem__("patch", 0), "patch=0"),
    (lambda g: g.attrs.__setitem__("patch", "six"), "missing or malformed attribute"),
    (lambda g: g.attrs.__setitem__("norm_eps", float("nan")), "norm_eps=nan"),
])
def test_kmeans_from_edited_file_one_line(kmeans_file, tmp_path, edit, said):
    from dcgan_features.core.errors import UserError
    from dcgan_features.extract.sources.kmeans import load_dictionary

    path = _edited(kmeans_file, tmp_path, edit)
    with pytest.raises(UserError, match=f"edited.h5'.*{_re(said)}"):
        load_dictionary(path)


def _re(text):
    import re

    return re.escape(text)


def test_kmeans_k_bounded_by_patches_and_memory(run_cli, tmp_path, monkeypatch):
    import dcgan_features.core.memory as memory

    run_cli.error("extract", *DATA, "--model", "kmeans:400001", "--out", tmp_path / "k.h5",
                  match="more centroids than the 400000 patches")
    monkeypatch.setattr(memory, "available_bytes", lambda: 200 << 20)  # 200 MiB free
    run_cli.error("extract", *DATA, "--model", "kmeans:100000", "--out", tmp_path / "k.h5",
                  match="kmeans:100000 (its dictionary and one chunk of distances) need 1.0 GiB of memory, "
                        "more than the 200.0 MiB available here; use a smaller K")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model", ["pixels", "kmeans:4"])
@pytest.mark.parametrize("option", [["--grid", "2"], ["--bn", "running"], ["--grid", "1", "--bn", "batch"]])
def test_options_that_cannot_apply_to_the_source_refused(run_cli, tmp_path, model, option):
    """--grid and --bn were silently ignored for pixels and kmeans:K (their file said otherwise)."""
    run_cli.error("extract", *DATA, "--model", model, *option, "--out", tmp_path / "f.h5",
                  match=f"does not apply to --model {model}")
    assert list(tmp_path.iterdir()) == []


NAN_MODEL = '''
import torch
from torch import nn

def make():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        m[0].weight[0, 0, 0, 0] = float("nan")
    return m
'''


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_nan_weights_of_a_python_source_named_not_float16_advice(run_cli, tmp_path, dtype):
    (tmp_path / "nanmodel.py").write_text(NAN_MODEL)
    line = run_cli.error("extract", *DATA, "--model", f"python:{tmp_path / 'nanmodel.py'}:make", "--dtype", dtype,
                         "--bn", "running", "--out", tmp_path / "f.h5", match="the model gives NaN features at test row 0")
    assert "float16" not in line


def test_float16_overflow_still_gets_its_advice():
    import torch

    from dcgan_features.extract.run import _nonfinite

    assert "overflows float16" in str(_nonfinite("test", 0, torch.tensor([[70000.0]]).half()))


def test_extract_help_says_what_python_sources_run(run_cli):
    code, out, _ = run_cli("extract", "--help")
    text = " ".join(out.split())
    assert code == 0 and "This RUNS Python code: MODULE is imported (a .py file executed) and CALLABLE called" in text


def test_batch_checked_against_memory(run_cli, tmp_path):
    """--batch-size 65536 at --image-size 1024 asks for 1.5 TiB of float input: one line before the work."""
    run_cli.error("extract", *DATA, "--model", "pixels", "--image-size", "1024", "--batch-size", "65536",
                  "--out", tmp_path / "f.h5", match="a batch of 65536 images at 1024x1024 need")
    assert list(tmp_path.iterdir()) == []
