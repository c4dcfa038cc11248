"""Run-folder bookkeeping and RNG capture: the pieces a resume depends on."""

import json
import random

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import CheckpointError
from dcgan_features.train.state import RunFolder, capture_rng, check_resumable, restore_rng


def test_rng_roundtrip_replays_every_stream():
    data_gen, z_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    state = capture_rng(data_gen, z_gen)
    first = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=data_gen),
             torch.rand(2, generator=z_gen))
    restore_rng(state, data_gen, z_gen)
    again = (torch.rand(3), np.random.rand(), random.random(), torch.rand(2, generator=data_gen),
             torch.rand(2, generator=z_gen))
    assert torch.equal(first[0], again[0]) and first[1:3] == again[1:3]
    assert torch.equal(first[3], again[3]) and torch.equal(first[4], again[4])


def test_truncate_metrics_drops_later_rows_and_a_torn_last_line(tmp_path):
    folder = RunFolder(tmp_path)
    folder.create()
    for step in (5, 10, 15):
        folder.append_metrics({"step": step, "loss_d": 1.0})
    with open(folder.metrics, "a") as f:
        f.write('{"step": 20, "los')  # killed mid-write
    folder.truncate_metrics(10)
    assert [json.loads(x)["step"] for x in folder.metrics.read_text().splitlines()] == [5, 10]


def test_check_resumable_refuses_weights_only_and_changed_settings():
    cfg = {"arch": "dcgan32", "width": 4, "nz": 100, "dataset": "digits", "batch_size": 64, "seed": 0,
           "lr": 2e-4, "beta1": 0.5}
    with pytest.raises(CheckpointError, match="weights only"):
        check_resumable({"G": {}, "D": {}}, cfg, "m.pt")
    ckpt = {"optimizer_G": {}, "step": 3, "config": dict(cfg, seed=1)}
    with pytest.raises(CheckpointError, match="trained with --seed 1, this run asks for 0"):
        check_resumable(ckpt, cfg, "m.pt")
    check_resumable({"optimizer_G": {}, "step": 3, "config": dict(cfg)}, cfg, "m.pt")  # same run: fine
