"""Writes: every output checked before the work, every failed write one line naming the path.

The disk-full cases use a real tmpfs filled to the last page (ENOSPC from the kernel); where
this machine cannot mount one they are skipped with the reason, and the patched-write cases
still cover the message.
"""

import errno
import os

import pytest

from dcgan_features.nets import checkpoint
from dcgan_features.nets.architectures import build
from dcgan_features.core.atomic import atomic_path, check_output_file, check_output_folder, write_error
from dcgan_features.core.errors import UserError, WriteError
from dcgan_features.nets.theano_import import write_random_params

from cli_checks import assert_one_line, read_only_dir, run_cli
from probes.test_rows import write_features


@pytest.fixture
def full_disk(tiny_disk):
    """The 256 KiB tmpfs of conftest's tiny_disk with no page left."""
    with open(tiny_disk / "filler", "wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    yield tiny_disk


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    G, D = build("dcgan32", width=4)
    checkpoint.save(path, checkpoint.make_payload("dcgan32", 4, G, D))
    return path


def disk_full_commands(tmp_path, disk, ckpt, digits) -> dict:
    theano = tmp_path / "theano"
    theano.mkdir()
    write_random_params(theano, "svhn32", width=2, epoch=1)
    Xtr, ytr, Xte, yte = digits
    feats = write_features(tmp_path / "f.h5", {"train": (Xtr, ytr), "test": (Xte, yte)})
    return {
        "train": ["train", "--dataset", "synthetic", "--arch", "dcgan32", "--width", "16", "--batch-size", "100",
                  "--max-steps", "1", "--device", "cpu", "--out", disk / "run"],
        "sample": ["sample", ckpt, "--n", "16", "--device", "cpu", "--out", disk / "s.png"],
        "import-theano": ["import-theano", theano, "--arch", "svhn32", "--out", disk / "m.pt"],
        "probe": ["probe", "digits", "--features", feats, "--probe", "logreg", "--draws", "1", "--C", "0.1",
                  "--device", "cpu", "--out", disk / "probes"],
    }


def check_disk_full(capsys, disk, argv) -> None:
    code, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    # probe logs its progress on stderr first; the failure itself is the one last line, and the
    # only error line. The other commands print nothing else.
    progress = lines[:-1] if argv[0] == "probe" else []
    assert lines[:-1] == progress and not any(ln.startswith("error") or "disk full" in ln for ln in progress), err
    assert_one_line(code, lines[-1], "disk full while writing", str(disk))
    assert "Traceback" not in err
    left = sorted(p.name for p in disk.rglob("*") if p.is_file() and p.name != "filler")
    assert not [n for n in left if n.endswith(".tmp") or n in ("s.png", "m.pt", "probes.csv")], (argv[0], left)


@pytest.mark.parametrize("command", ["probe", "sample", "import-theano",
                                     pytest.param("train", marks=pytest.mark.slow)])
def test_disk_full_is_one_line(command, full_disk, tiny_ckpt, tmp_path, capsys, digits):
    """'disk full while writing <path>' and nothing half-written, from a real ENOSPC."""
    check_disk_full(capsys, full_disk, disk_full_commands(tmp_path, full_disk, tiny_ckpt, digits)[command])


def test_write_errors_are_one_line(tmp_path, monkeypatch):
    """Without a tmpfs: the same messages from a patched write."""
    out = tmp_path / "x.bin"
    for exc, message in ((OSError(errno.ENOSPC, "No space left on device"), "disk full while writing"),
                         (OSError(errno.EROFS, "Read-only file system"), "cannot write .*Read-only file system"),
                         (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"),
                          "cannot write .*inline_container")):
        with pytest.raises(WriteError, match=message) as e:
            with atomic_path(out):
                raise exc
        assert "\n" not in str(e.value) and str(out) in str(e.value)
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):  # anything else is a bug and keeps its type
        with atomic_path(out):
            raise ValueError("not a write failure")
    assert write_error(out, OSError(errno.EDQUOT, "Disk quota exceeded")).disk_full


def test_outputs_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    for bad, message in (("", "names no file"), (tmp_path / "dir", "is a folder"),
                         (tmp_path / "missing" / "x.png", "does not exist"),
                         (tmp_path / "file" / "x.png", "is a file, not a folder")):
        with pytest.raises(UserError, match=message):
            check_output_file(bad)
    assert check_output_file(tmp_path / "new" / "deeper" / "x.csv", parents=True)
    with pytest.raises(UserError, match="is a file"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "run")
    assert check_output_folder(tmp_path / "new" / "run")


def test_every_command_refuses_an_unwritable_output_before_the_work(tmp_path, capsys, tiny_ckpt, monkeypatch):
    ro = read_only_dir(tmp_path)
    loaded = []
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: loaded.append(a) or pytest.fail("loaded"))
    theano = tmp_path / "theano"
    theano.mkdir()
    cases = [
        ["sample", tiny_ckpt, "--out", f"{ro}/s.png"],
        ["interpolate", tiny_ckpt, "--out", f"{ro}/i.png"],
        ["arithmetic", tiny_ckpt, "--a", "1", "--b", "2", "--c", "3", "--out", f"{ro}/a.png"],
        ["import-theano", theano, "--arch", "svhn32", "--out", f"{ro}/m.pt"],
        ["extract", "--checkpoint", tiny_ckpt, "--dataset", "digits", "--out", f"{ro}/f.h5"],
        ["train", "--dataset", "digits", "--arch", "dcgan32", "--out", f"{ro}/run"],
        ["probe", "digits", "--features", tiny_ckpt, "--out", f"{ro}/probes"],
        ["quickstart", "--out", f"{ro}/run"],
        ["quickstart", "--out", tmp_path / "run", "--results", f"{ro}/q.csv"],
        ["sample", tiny_ckpt, "--out", ""],
        ["extract", "--checkpoint", tiny_ckpt, "--dataset", "digits", "--out", ""],
        ["quickstart", "--out", tmp_path / "run", "--results", ""],
        ["quickstart", "--out", tmp_path / "run", "--results", tmp_path],
        ["sample", tiny_ckpt, "--out", tmp_path],
    ]
    for argv in cases:
        code, err = run_cli(capsys, *argv)
        assert_one_line(code, err)
        assert any(s in err for s in ("not writable", "names no file", "is a folder", "cannot create", "directory")), err
    assert not loaded and not (tmp_path / "run").exists()
