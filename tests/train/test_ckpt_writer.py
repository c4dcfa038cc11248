"""Checkpoints written in the background: the step does not wait, the file is exact and atomic,
errors are not lost; and a whole run gives the same checkpoint with or without it."""

from __future__ import annotations

import threading

import pytest
import torch

from dcgan_features.nets import checkpoint
from dcgan_features.train.ckpt_writer import CheckpointWriter, snapshot
from dcgan_features.train.loop import TrainConfig, train


def test_submit_returns_while_the_write_is_still_running(tmp_path):
    release, started = threading.Event(), threading.Event()
    written = []

    def slow_save(path, payload):
        started.set()
        assert release.wait(30)
        torch.save(payload, path)
        written.append(path)

    writer = CheckpointWriter(background=True)
    live = {"w": torch.zeros(3), "opt": {"state": {0: {"exp_avg": torch.ones(2)}}}}
    writer.submit([tmp_path / "a.pt", tmp_path / "b.pt"], snapshot(live), save=slow_save)
    assert started.wait(30) and writer.busy and not written  # the caller is free while the write blocks
    live["w"].add_(5)  # training goes on mutating the live tensors
    live["opt"]["state"][0]["exp_avg"].mul_(0)
    release.set()
    writer.wait()
    assert not writer.busy and len(written) == 2
    got = torch.load(tmp_path / "b.pt")
    assert got["w"].tolist() == [0.0, 0.0, 0.0] and got["opt"]["state"][0]["exp_avg"].tolist() == [1.0, 1.0]


def test_a_failed_background_write_is_raised_at_the_next_wait(tmp_path):
    def full_disk(path, payload):
        raise OSError(28, "No space left on device")

    writer = CheckpointWriter(background=True)
    writer.submit([tmp_path / "a.pt"], {}, save=full_disk)
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    writer.wait()  # reported once


def test_background_and_synchronous_checkpoints_are_identical(tmp_path):
    # The same 6 steps (checkpoints every 3) with the background writer and pre-normalised
    # data, and with neither: every tensor of last.pt equal, bit for bit.
    ckpts = []
    for name, fast in (("fast", True), ("plain", False)):
        train(TrainConfig(dataset="synthetic", arch="dcgan32", width=4, batch_size=100, device="cpu",
                          progress=False, out=str(tmp_path / name), epochs=1, max_steps=6, ckpt_every=3,
                          log_every=3, sample_every=100, async_ckpt=fast, prenormalize=fast))
        ckpts.append(checkpoint.load(tmp_path / name / "checkpoints" / "last.pt"))
    a, b = ckpts
    assert a["step"] == b["step"] == 6
    flat = {}
    for part in ("G", "D", "optimizer_G", "optimizer_D"):
        sa, sb = (c[part] if part in "GD" else {f"{i}.{k}": v for i, st in c[part]["state"].items()
                                                  for k, v in st.items()} for c in (a, b))
        assert sa.keys() == sb.keys() and sa
        flat.update({f"{part}.{k}": (sa[k], sb[k]) for k in sa})
    unequal = [k for k, (x, y) in flat.items() if not torch.equal(x, y)]
    assert not unequal, unequal[:5]
    assert torch.equal(a["rng"]["z"], b["rng"]["z"]) and torch.equal(a["rng"]["data"], b["rng"]["data"])
