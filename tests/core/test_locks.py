"""Exclusive outputs: a second process on one output is refused in one line; stale locks are taken over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dcgan_features.core.errors import FeatureFileError, UserError
from dcgan_features.extract.writer import FeatureWriter
from dcgan_features.core.locks import OutputLocked, lock_path, output_lock
from dcgan_features.extract.store import FeatureFile, FileMeta

from cli_checks import assert_one_line, run_cli
from feature_files import write_features

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

HOLD = """
import sys, time
from dcgan_features.core.locks import output_lock
with output_lock(sys.argv[1], folder=sys.argv[2] == "1"):
    print("held", flush=True)
    time.sleep(60)
"""


def hold(path, folder=False) -> subprocess.Popen:
    """Another process holding ``path``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "1" if folder else "0"],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.005)


def test_second_process_refused_then_stale_lock_taken_over(tmp_path):
    out = tmp_path / "f.h5"
    proc = hold(out)
    try:
        with pytest.raises(OutputLocked, match=f"f.h5 is in use by process {proc.pid} on "):
            with output_lock(out):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(out).exists()  # left behind by the killed holder, its pid inside
    assert lock_path(out).read_text().split()[0] == str(proc.pid)
    with output_lock(out) as lock:  # stale: the kernel dropped the dead holder's lock
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_folder_lock_and_what_it_leaves(tmp_path):
    run = tmp_path / "a" / "run"
    with output_lock(run, folder=True) as lock:
        assert lock == run / ".lock" and run.is_dir()
    assert not (tmp_path / "a").exists()  # created for the lock and empty: removed again
    (tmp_path / "file").write_text("x")  # a parent that is a file: no lock, even as root
    with pytest.raises(UserError, match="is a file, not a folder"):
        with output_lock(tmp_path / "file" / "f.h5", parents=True):
            pass
    with pytest.raises(UserError, match="does not exist; create it first"):
        with output_lock(tmp_path / "missing" / "f.h5"):
            pass
    with pytest.raises(UserError, match="is a folder"):
        with output_lock(tmp_path):
            pass
    with pytest.raises(UserError, match="is a file"):
        with output_lock(tmp_path / "file", folder=True):
            pass
    for empty in ("", ".", "x/.."):
        with pytest.raises(UserError, match="names no file"):
            with output_lock(empty):
                pass


def test_writer_renames_only_its_own_file(tmp_path):
    meta = FileMeta("digits", "dcgan32", 4, ("d1",), (8,), 1, "batch", "0" * 64)
    out = tmp_path / "f.h5"
    w = FeatureWriter(out, meta, {"test": (np.array([1, 2]), np.arange(2))}).open()
    w.write("test", 0, np.ones((2, 8), np.float16))
    w.complete("test")
    other = tmp_path / "other.h5"
    other.write_bytes(w.partial.read_bytes())  # another writer's file put in its place
    os.replace(other, w.partial)
    with pytest.raises(FeatureFileError, match="replaced by another process"):
        w.finish()
    w.close()
    assert not out.exists()


EXTRACT = ["extract", "--random-init", "--arch", "dcgan32", "--width", "4", "--dataset", "digits",
           "--device", "cpu", "--bn", "batch"]


def test_every_writer_takes_its_lock_before_any_work(tmp_path, capsys):
    """extract's --out and train's run folder, held by another process: refused in one line,
    nothing loaded, nothing written."""
    out, run = tmp_path / "f.h5", tmp_path / "run"
    holders = [hold(out), hold(run, folder=True)]
    try:
        for argv, holder in ((EXTRACT + ["--out", out], holders[0]),
                             (["train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--epochs", "1",
                               "--device", "cpu", "--out", run], holders[1])):
            code, err = run_cli(capsys, *argv)
            assert_one_line(code, err, f"in use by process {holder.pid}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".f.h5.lock", "run"]
        assert [p.name for p in run.iterdir()] == [".lock"]
    finally:
        for h in holders:
            h.kill()
            h.wait()


def test_probe_refused_while_its_table_is_held(tmp_path, capsys, digits):
    """probe appends to OUT/probes.csv: another process holding that table's lock refuses it
    in one line, before any fit, and nothing is written beside the table."""
    Xtr, ytr, Xte, yte = digits
    feats = write_features(tmp_path / "f.h5", {"train": (Xtr, ytr), "test": (Xte, yte)})
    out = tmp_path / "probes"
    out.mkdir()
    holder = hold(out / "probes.csv")
    try:
        code, err = run_cli(capsys, "probe", "digits", "--features", feats, "--probe", "logreg", "--draws", "1",
                            "--C", "0.1", "--device", "cpu", "--out", out)
        assert_one_line(code, err, f"probes.csv is in use by process {holder.pid}")
        assert [p.name for p in out.iterdir()] == [".probes.csv.lock"]  # the holder's, nothing of ours
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_concurrent_extracts_on_one_out(tmp_path, capsys):
    out = tmp_path / "f.h5"
    first = subprocess.Popen([sys.executable, "-m", "dcgan_features.cli", *EXTRACT, "--batch-size", "1",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(lock_path(out), first)
    code, err = run_cli(capsys, *EXTRACT, "--out", out)
    assert_one_line(code, err, f"in use by process {first.pid}")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    with FeatureFile(out) as ff:  # the first run's file, whole
        assert all(ff.is_complete(s) for s in ff.splits) and ff.n_rows("train") == 1297
    assert not lock_path(out).exists() and not Path(str(out) + ".partial").exists()


@pytest.mark.slow
def test_two_concurrent_trains_on_one_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--batch-size", "8",
            "--epochs", "50", "--device", "cpu", "--out", str(run)]
    first = subprocess.Popen([sys.executable, "-m", "dcgan_features.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(run / "config.json", first)
        code, err = run_cli(capsys, *argv)
        assert_one_line(code, err, f"in use by process {first.pid}")
        code, err = run_cli(capsys, *argv, "--resume")
        assert_one_line(code, err, f"in use by process {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM  # the first run checkpointed and stopped cleanly
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / ".lock").exists()


def _plant(at: Path, target: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target)


def test_lock_path_symlink_never_followed_by_any_command(tmp_path, capsys):
    """A symlink planted at each command's lock path (extract's .NAME.lock, train's and reproduce's
    RUN/.lock, probe's OUT/.probes.csv.lock): refused in one line, its target byte for byte untouched,
    the link itself left, and no work done."""
    target = tmp_path / "precious.txt"
    target.write_text("the user's data\n")
    feats = tmp_path / "given.h5"
    feats.write_bytes(b"")  # probe takes its lock before it opens the features
    out, run, probes, chain = tmp_path / "f.h5", tmp_path / "run", tmp_path / "probes", tmp_path / "chain"
    cases = [
        (lock_path(out), EXTRACT + ["--out", out]),
        (run / ".lock", ["train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--epochs", "1",
                         "--device", "cpu", "--out", run]),
        (probes / ".probes.csv.lock", ["probe", "digits", "--features", feats, "--out", probes, "--device", "cpu"]),
        (chain / ".lock", ["reproduce", "digits", "--out", chain, "--train-dataset", "digits", "--width", "2",
                           "--epochs", "1", "--batch-size", "8", "--draws", "2", "--C", "0.1", "--probe", "svm",
                           "--device", "cpu"]),
    ]
    for lock, argv in cases:
        _plant(lock, target)
        code, err = run_cli(capsys, *argv)
        assert_one_line(code, err, "is a symbolic link, not a lock this tool wrote")
        assert target.read_text() == "the user's data\n", argv[0]
        assert lock.is_symlink(), argv[0]
    assert not out.exists() and sorted(p.name for p in run.iterdir()) == [".lock"]
    assert sorted(p.name for p in chain.iterdir()) == [".lock"]


@pytest.mark.parametrize("plant", ["fifo", "hardlink", "foreign"])
def test_lock_path_other_planted_files_left_untouched(tmp_path, plant):
    """A FIFO (opening it must not block), a hard link to a user's file, or a regular file with other
    content at the lock path: refused, nothing truncated."""
    out = tmp_path / "f.h5"
    lock = lock_path(out)
    target = tmp_path / "precious.txt"
    target.write_text("12 keep me\n" if plant == "hardlink" else "the user's data\n")
    if plant == "fifo":
        os.mkfifo(lock)
    elif plant == "hardlink":
        os.link(target, lock)
    else:
        lock.write_text("the user's data\n")
    with pytest.raises(UserError, match="not a lock this tool wrote; it is left as it is"):
        with output_lock(out):
            pass
    assert lock.exists() or lock.is_fifo()
    if plant != "fifo":
        assert lock.read_text() == target.read_text() != ""


def test_partial_path_symlink_never_written_through(tmp_path, capsys):
    """extract resumes ``<out>.partial`` in place (h5py "r+"): a link planted there must not aim the
    writer at another HDF5 file, even one that matches the run's settings."""
    meta = FileMeta("digits", "dcgan32", 4, ("d1",), (8,), 1, "batch", "0" * 64)
    victim = tmp_path / "victim.h5"
    w = FeatureWriter(tmp_path / "v.h5", meta, {"test": (np.array([1, 2]), np.arange(2))}).open()
    w.close()
    os.replace(w.partial, victim)  # a matching partial file, kept elsewhere
    before = victim.read_bytes()
    out = tmp_path / "f.h5"
    Path(str(out) + ".partial").symlink_to(victim)
    with pytest.raises(FeatureFileError, match="is a symbolic link, not a partial file this tool wrote"):
        FeatureWriter(out, meta, {"test": (np.array([1, 2]), np.arange(2))}).open()
    assert victim.read_bytes() == before


def test_train_never_appends_through_a_link_in_its_run_folder(tmp_path, capsys):
    """A link planted at RUN/metrics.jsonl (one of train's own names): a fresh run refuses the folder
    as holding files it did not write, and the append itself never follows a link."""
    from dcgan_features.train.state import RunFolder

    target = tmp_path / "precious.txt"
    target.write_text("the user's data\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(target)
    code, err = run_cli(capsys, "train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--epochs", "1",
                        "--device", "cpu", "--out", run)
    assert_one_line(code, err, "holds files this tool did not write (metrics.jsonl)")
    with pytest.raises(UserError, match="metrics.jsonl' is a symbolic link"):
        RunFolder(run).append_metrics({"step": 1})
    assert target.read_text() == "the user's data\n"
