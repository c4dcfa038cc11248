"""Hostile extract inputs of issue 23: each gives its answer or one line, never a traceback or a partial."""

import h5py
import numpy as np
import pytest

from dcgan_features.nets.architectures import ARCHITECTURES

BASE = ["extract", "--random-init", "--width", "2", "--dataset", "digits", "--device", "cpu", "--limit", "6",
        "--splits", "test"]


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
