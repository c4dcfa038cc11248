"""Checks shared by the CLI tests: run the CLI in-process, the one-line error contract, equal feature files."""

import os

import h5py
import numpy as np
import pytest

from dcgan_features.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    """``dcgan-features ARGV`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def same_file(a, b):
    """Same datasets, same attrs (but `created`), same groups: what an uninterrupted run writes."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert set(fa.keys()) == set(fb.keys())
        ra, rb = dict(fa.attrs), dict(fb.attrs)
        ra.pop("created"), rb.pop("created")
        assert ra == rb
        for s in fa:
            assert dict(fa[s].attrs) == dict(fb[s].attrs)
            assert set(fa[s].keys()) == set(fb[s].keys())
            for k in fa[s]:
                assert fa[s][k].dtype == fb[s][k].dtype and fa[s][k].chunks == fb[s][k].chunks
                np.testing.assert_array_equal(fa[s][k][...], fb[s][k][...])



def read_only_dir(tmp_path) -> str:
    """A folder this process cannot write into: a read-only one, or /proc/sys when running as root
    (root ignores permissions; /proc/sys refuses even root)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return "/proc/sys" if os.access(d, os.W_OK) else str(d)
