"""`dcgan-features extract` end to end: the file's content, kill -9 + resume, every bad input."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dcgan_features.nets import checkpoint
from dcgan_features.nets.architectures import build
from dcgan_features.data.registry import load
from dcgan_features.extract.run import random_init_sha256
from dcgan_features.extract.hooks import extract_features
from dcgan_features.extract.writer import FeatureWriter
from dcgan_features.extract.store import FeatureFile, partial_path
from cli_checks import read_only_dir, run_cli, same_file

FAULTS = Path(__file__).resolve().parents[1] / "faults.py"  # the SIGKILL launcher
FAST = ["--random-init", "--arch", "dcgan32", "--width", "2", "--dataset", "synthetic", "--limit", "40",
        "--batch-size", "16", "--device", "cpu"]



def test_file_holds_the_extractors_features(run_cli, tmp_path):
    out = tmp_path / "f.h5"
    code, stdout, err = run_cli("extract", *FAST, "--bn", "batch", "--out", out)
    assert code == 0, err
    assert "wrote train 40 + test 40 rows of dcgan32 features" in stdout
    _, D = build("dcgan32", width=2, seed=0)
    D.to(memory_format=torch.channels_last)  # as extract runs it (rounding differs from NCHW)
    with FeatureFile(out) as ff:
        assert ff.meta["checkpoint_sha256"] == random_init_sha256("dcgan32", 2, 0)
        assert ff.meta["bn_mode"] == "batch" and ff.dim == 16 * 7 * 2
        for split in ("train", "test"):
            ds = load("synthetic", split, image_size=32)
            x = ds.images[:40].float() / 127.5 - 1
            want = torch.cat([extract_features(D, b.contiguous(memory_format=torch.channels_last), bn="batch")
                              for b in x.split(16)]).half()
            np.testing.assert_array_equal(ff.read(split, dtype=np.float16), want.numpy())
            np.testing.assert_array_equal(ff.labels(split), ds.labels[:40].numpy())
            np.testing.assert_array_equal(ff.indices(split), np.arange(40))
    code, stdout, _ = run_cli("extract", *FAST, "--bn", "batch", "--out", out)  # again: nothing to do
    assert code == 0 and "nothing to do" in stdout


@pytest.mark.parametrize("bn,kill_after,written", [("recompute", 400, 292), ("batch", 700, 600)])
def test_kill_9_then_resume_gives_the_uninterrupted_file(run_cli, tmp_path, bn, kill_after, written):
    """3584-byte rows: 292-row chunks, 64-row batches. Killed inside train (recompute: the
    resume restarts at row 256, inside a chunk) or inside test once train is complete (batch)."""
    args = ["--random-init", "--arch", "imagenet32", "--width", "4", "--dataset", "synthetic", "--limit", "600",
            "--batch-size", "64", "--device", "cpu", "--bn", bn, "--dtype", "float32"]
    ref = tmp_path / "ref.h5"
    assert run_cli("extract", *args, "--out", ref)[0] == 0
    out = tmp_path / "f.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(FAULTS), "kill-after-rows", str(kill_after), "--", "extract", *args,
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not out.exists() and partial_path(out).exists()
    with FeatureFile(partial_path(out)) as ff:
        assert not ff.is_complete("test")
    code, _, err = run_cli("extract", *args, "--out", out)
    assert code == 0, err
    assert "resuming" in err and f"{written} of 800 rows already written" in err
    assert "re-estimating" not in err  # recompute: the statistics kept in the partial file are reused
    assert not partial_path(out).exists()
    same_file(ref, out)


def test_from_checkpoint_and_imported_checkpoint_bn_running(run_cli, tmp_path):
    G, D = build("dcgan32", width=2, seed=3)
    ckpt = tmp_path / "m.pt"
    checkpoint.save(ckpt, checkpoint.make_payload("dcgan32", 2, G, D))
    out = tmp_path / "f.h5"
    code, _, err = run_cli("extract", "--checkpoint", ckpt, "--dataset", "synthetic", "--limit", "8", "--splits", "test",
                       "--bn", "running", "--layer", "d3", "--out", out)
    assert code == 0, err
    with FeatureFile(out) as ff:
        assert ff.splits == ["test"] and ff.meta["checkpoint_sha256"] == checkpoint.sha256(ckpt)
        assert ff.meta["layers"] == ["d3"] and ff.dim == 8 * 16
    imported = tmp_path / "theano.pt"
    checkpoint.save(imported, checkpoint.make_payload("dcgan32", 2, G, D, imported=True))
    run_cli.error("extract", "--checkpoint", imported, "--dataset", "synthetic", "--bn", "running", "--out", out,
                   match="imported from Theano and holds no BatchNorm running statistics")


def test_feature_file_records_what_the_model_was_trained_on(run_cli, tmp_path):
    G, D = build("dcgan32", width=2, seed=3)
    made = {"trained": checkpoint.make_payload("dcgan32", 2, G, D, trained_on="fashion-mnist"),
            # a checkpoint written before the key existed: its training config names the data
            "older": checkpoint.make_payload("dcgan32", 2, G, D, config={"dataset": "cifar10"})}
    for name, payload in made.items():
        checkpoint.save(tmp_path / f"{name}.pt", payload)
    cases = {"trained": (["--checkpoint", tmp_path / "trained.pt"], "fashion-mnist"),
             "older": (["--checkpoint", tmp_path / "older.pt"], "cifar10"),
             "random": (["--random-init", "--arch", "dcgan32", "--width", "2"], "none")}
    for name, (model, expected) in cases.items():
        out = tmp_path / f"{name}.h5"
        code, _, err = run_cli("extract", *model, "--dataset", "synthetic", "--limit", "8", "--splits", "test",
                           "--bn", "batch", "--out", out)
        assert code == 0, err
        with FeatureFile(out) as ff:
            assert ff.meta["trained_on"] == expected and ff.file_meta().trained_on == expected


def test_mismatch_refused_then_overwrite(run_cli, tmp_path):
    out = tmp_path / "f.h5"
    assert run_cli("extract", *FAST, "--bn", "batch", "--out", out)[0] == 0
    run_cli.error("extract", *FAST, "--bn", "batch", "--seed", "1", "--out", out,
                   match="exists and was made with checkpoint_sha256")
    run_cli.error("extract", *FAST, "--bn", "running", "--grid", "2", "--out", out, match="bn_mode batch (asked running)")
    assert run_cli("extract", *FAST, "--bn", "batch", "--seed", "1", "--out", out, "--overwrite")[0] == 0
    with FeatureFile(out) as ff:
        assert ff.meta["checkpoint_sha256"] == random_init_sha256("dcgan32", 2, 1)


def test_disk_full_leaves_nothing_a_reader_accepts_then_resumes(run_cli, tmp_path, monkeypatch):
    out = tmp_path / "f.h5"
    real_write = FeatureWriter.write
    calls = []

    def write(self, split, lo, rows):
        calls.append(lo)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, split, lo, rows)

    monkeypatch.setattr(FeatureWriter, "write", write)
    line = run_cli.error("extract", *FAST, "--bn", "batch", "--out", out, match="disk full while writing features")
    assert "run the same command again to resume" in line
    assert not out.exists()
    with FeatureFile(partial_path(out)) as ff:
        with pytest.raises(Exception, match="incomplete"):
            ff.require("train")
    monkeypatch.setattr(FeatureWriter, "write", real_write)
    code, _, err = run_cli("extract", *FAST, "--bn", "batch", "--out", out)
    assert code == 0 and "0 of 80 rows already written" in err  # one chunk per split: none saved


def test_real_disk_full(run_cli, tiny_disk, monkeypatch):
    out = tiny_disk / "f.h5"
    args = [a for a in FAST if a not in ("--limit", "40")] + ["--bn", "batch", "--dtype", "float32"]
    run_cli.error("extract", *args, "--out", out, match="not enough disk space")  # 1.1 MB into 256 KiB
    assert not any(tiny_disk.iterdir())
    # the space check passes (a disk that fills up during the run): HDF5's own ENOSPC path
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 40))
    run_cli.error("extract", *args, "--out", out, match="disk full while writing features")
    assert not out.exists()
    with FeatureFile(partial_path(out)) as ff:
        with pytest.raises(Exception, match="incomplete"):
            ff.require("train")
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
    code, _, err = run_cli("extract", *args, "--out", out)
    assert code == 0 and "resuming" in err, err
    run_cli("extract", *args, "--out", tiny_disk.parent / "ref.h5")
    same_file(tiny_disk.parent / "ref.h5", out)


def test_bad_input_is_one_line(run_cli, tmp_path):
    out = tmp_path / "f.h5"
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"\x00garbage" * 10)
    cases = [
        ([*FAST, "--layer", "d7", "--out", out], "block 'd7' not in model; available: d1..d3"),
        ([*FAST, "--grid", "5", "--out", out], "grid 5 is larger than block d3's 4x4 output"),
        (["--checkpoint", tmp_path / "none.pt", "--dataset", "synthetic", "--out", out], "not found"),
        (["--checkpoint", garbage, "--dataset", "synthetic", "--out", out], "corrupt or truncated"),
        ([*FAST[:5], "--dataset", "cifar10", "--data-dir", tmp_path, "--out", out], "cifar10 train split not found"),
        ([*FAST, "--splits", "train,val", "--out", out], "has no split 'val'"),
        ([*FAST, "--out", tmp_path / "missing" / "f.h5"], "does not exist"),
        ([*FAST, "--out", os.path.join(read_only_dir(tmp_path), "f.h5")], "is not writable"),
        ([*FAST[5:], "--out", out], "exactly one of --checkpoint"),
        (["--checkpoint", garbage, *FAST, "--out", out], "exactly one of --checkpoint"),
        (["--checkpoint", garbage, "--width", "2", "--dataset", "synthetic", "--out", out], "only apply with --random-init"),
        (["--random-init", "--dataset", "synthetic", "--out", out], "--random-init needs --arch"),
        (["--random-init", "--arch", "vgg", "--dataset", "synthetic", "--out", out], "unknown architecture 'vgg'"),
        ([*FAST, "--splits", ",", "--out", out], "--splits needs at least one split"),
    ]
    for args, match in cases:
        run_cli.error("extract", *args, match=match)
    assert not out.exists() and not partial_path(out).exists()
