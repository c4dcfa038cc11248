"""Shared test settings."""

import subprocess

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for every test: the models and matrices here are tiny, and on a busy
    2-core machine two OpenMP threads spin-waiting on each other run them many times slower.
    scikit-learn's BLAS is limited too. Subprocesses set OMP_NUM_THREADS themselves."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def quiet_progress(monkeypatch):
    """No progress lines off a terminal (they start after QUIET_SECONDS): on a loaded machine a tiny
    run can last that long and add lines to a stderr that a test counts. tests/core/test_progress.py
    and the tests of each stage's lines set it to 0 themselves."""
    monkeypatch.setattr("dcgan_features.core.progress.QUIET_SECONDS", float("inf"))


@pytest.fixture(scope="session")
def digits():
    """Real structured data: scikit-learn's digits, pixels in [0, 1], split 1297 / 500 in file order."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:1297], y[:1297], X[1297:], y[1297:]


class CliRun:
    """``dcgan-features ARGS`` in this process: ``run_cli(*args) -> (exit code, stdout, stderr)``."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args) -> tuple[int, str, str]:
        from dcgan_features.cli import main

        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return e.value.code, out, err

    def error(self, *args, match: str = "") -> str:
        """Run, expect a non-zero exit with exactly one ``error: ...`` line on stderr containing ``match``."""
        code, _, err = self(*args)
        assert code != 0, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert match in lines[0], lines[0]
        return lines[0]


@pytest.fixture
def run_cli(capsys) -> CliRun:
    """The CLI runner every command's tests share (see :class:`CliRun`)."""
    return CliRun(capsys)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs: real ENOSPC from the kernel (needs root and mount rights, else skipped)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the patched-write tests cover disk full")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
