"""The CPU thread policy: who decides (--threads, OMP_NUM_THREADS, the size), applied per stage and recorded."""

import json

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import UserError
from dcgan_features.core.threads import ThreadChoice, choose_threads, thread_scope


@pytest.mark.parametrize("requested,size,env,device,want", [
    (None, 10, {}, "cpu", 1),                              # small work: one thread
    (None, 100, {}, "cpu", None),                          # at the threshold: torch's own count
    (None, 10, {"OMP_NUM_THREADS": "4"}, "cpu", None),     # the user's environment is left alone
    (None, 10, {"MKL_NUM_THREADS": "3"}, "cpu", None),
    (3, 10, {"OMP_NUM_THREADS": "4"}, "cpu", 3),           # --threads beats the environment
    (2, 10**9, {}, "cpu", 2),
    (None, 10, {}, "cuda", None),                          # a GPU run: CPU threads only feed it
])
def test_who_decides(requested, size, env, device, want):
    assert choose_threads(requested, size, 100, device, env=env).threads == want


def test_zero_threads_is_a_user_error():
    with pytest.raises(UserError, match="--threads"):
        choose_threads(0, 10, 100, env={})


def test_scope_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with thread_scope(ThreadChoice(3, "test")):
        inside = torch.get_num_threads()
    assert (inside, torch.get_num_threads()) == (3, before)
    with thread_scope(ThreadChoice(None, "left alone")):
        assert torch.get_num_threads() == before


def test_training_runs_under_the_policy_and_records_it(tmp_path, monkeypatch):
    from dcgan_features.train.loop import TrainConfig, _Run, train

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    seen, real = [], _Run._train_step
    monkeypatch.setattr(_Run, "_train_step", lambda self, r, z: seen.append(torch.get_num_threads()) or real(self, r, z))
    torch.set_num_threads(2)  # torch's count before the run: the policy must lower it, then restore it
    try:
        train(TrainConfig(dataset="synthetic", arch="dcgan32", width=4, batch_size=100, device="cpu", progress=False,
                          max_steps=2, epochs=1, sample_every=5, out=str(tmp_path / "r")))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    assert set(seen) == {1} and after == 2  # no flag, no environment: a tiny model gets one thread
    rec = json.loads((tmp_path / "r" / "config.json").read_text())
    assert rec["threads"] == 1 and rec["threads_reason"].startswith("one thread"), rec


def test_probe_records_its_threads(digits):
    from dcgan_features.probes.protocols import from_arrays, get_protocol, run_protocol

    Xtr, ytr, Xte, yte = digits
    recs = run_protocol("digits", from_arrays(Xtr[:400], ytr[:400], Xte, yte), ("knn",),
                        get_protocol("digits", val_size=50, draws=1), device="cpu", threads=2)
    assert {r["threads"] for r in recs} == {2} and torch.get_num_threads() == 1


def test_extract_records_its_threads(tmp_path):
    from dcgan_features.extract.run import extract, extract_config
    from dcgan_features.extract.sources import from_spec, SourceOptions

    res = extract(from_spec("random:dcgan32", SourceOptions(width=4)), tmp_path / "f.h5",
                  extract_config("synthetic", device="cpu", limit=64, threads=2))
    assert res["threads"] == 2 and res["threads_reason"] == "--threads 2" and torch.get_num_threads() == 1
    assert np.isfinite(res["images_per_s"])
