"""Extraction under the paper's protocols: float32 features, and SVHN's BatchNorm statistics as the
authors' ``infer_bnorm_stats`` computes them (their rows, their order, batches of 128, biased variance)."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import shuffle

from dcgan_features.data.registry import load
from dcgan_features.extract.run import extract, extract_config, random_init_model
from dcgan_features.extract.hooks import to_model_input
from dcgan_features.extract.store import FeatureFile


def authors_bn_statistics(D, images: torch.Tensor, holdout: int, nbatch: int = 128):
    """svhn_semisup_analysis.py's bnorm_statistics + infer_bnorm_stats, written out with torch ops:
    the train rows after their shuffle's first ``holdout``, per batch the mean and biased variance
    of each BN layer's input (the layer normalising with them), averaged over batches."""
    rows = shuffle(np.arange(len(images)), random_state=np.random.RandomState(42))[holdout:]
    U, S, n = None, None, 0
    for lo in range(0, len(rows), nbatch):
        h = D.blocks.d1(to_model_input(images[rows[lo:lo + nbatch]], "cpu"))
        us, ss = [], []
        for block in (D.blocks.d2, D.blocks.d3):
            conv, bn = block[0], block[1]
            z = conv(h)
            u, s = z.mean((0, 2, 3)), ((z - z.mean((0, 2, 3), keepdim=True)) ** 2).mean((0, 2, 3))
            us.append(u.double()), ss.append(s.double())
            h = F.leaky_relu(F.batch_norm(z, None, None, bn.weight, bn.bias, True, 0.0, bn.eps), 0.2)
        U = us if U is None else [a + b for a, b in zip(U, us)]
        S = ss if S is None else [a + b for a, b in zip(S, ss)]
        n += 1
    return [u / n for u in U], [s / n for s in S]


def test_svhn_extraction_is_the_authors_bn_in_float32(tmp_path):
    data = {s: load("synthetic", s) for s in ("train", "test")}
    kw = dict(splits=("test",), device="cpu", limit=300)  # 300 train images: 200 after a holdout of 100
    cfg = extract_config("svhn", bn_holdout=100, **kw)
    assert (cfg.bn, cfg.dtype, cfg.tf32, cfg.bn_batch_size, cfg.bn_seed) == ("authors", "float32", False, 128, 42)
    model = random_init_model("svhn32", 4, seed=0)
    with torch.no_grad():
        U, S = authors_bn_statistics(random_init_model("svhn32", 4, seed=0).D, data["train"].images[:300], 100)
    said = []
    extract(model, tmp_path / "s.h5", cfg, data=data, log=said.append)
    bns = [model.D.blocks.d2[1], model.D.blocks.d3[1]]
    for bn, u, s in zip(bns, U, S):
        torch.testing.assert_close(bn.running_mean.double(), u, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(bn.running_var.double(), s, rtol=1e-5, atol=1e-7)
    assert any("200 train images outside their 100 validation rows" in m for m in said)
    with FeatureFile(tmp_path / "s.h5") as ff:
        assert ff.meta["bn_mode"] == "authors" and ff.dtype == "float32"
    # ours (every train row in file order, unbiased batch variances) is measurably another estimate
    ours = random_init_model("svhn32", 4, seed=0)
    extract(ours, tmp_path / "o.h5", extract_config("svhn", bn="recompute", **kw),
            data=data)
    assert not torch.allclose(ours.D.blocks.d3[1].running_var.double(), S[1], rtol=1e-3)
    assert extract_config("digits").dtype == "float16" and extract_config("cifar10").dtype == "float32"


def test_the_paper_settings_are_the_dataset_registry_entry(monkeypatch):
    """extract_config reads DatasetSpec.paper_extraction: a dataset is one registry entry, its
    paper extraction included; the probe's departures column compares with the same entry."""
    import dataclasses

    from dcgan_features.data import registry
    from dcgan_features.probes.protocols import _extraction_departures

    assert registry.DATASETS["svhn"].paper_extraction == {"bn": "authors", "dtype": "float32", "tf32": False}
    assert registry.DATASETS["cifar10"].paper_extraction == {"dtype": "float32", "tf32": False}
    assert registry.DATASETS["digits"].paper_extraction == {}
    monkeypatch.setitem(registry.DATASETS, "digits", dataclasses.replace(
        registry.DATASETS["digits"], paper_extraction={"dtype": "float32", "bn": "batch"}))
    cfg = extract_config("digits", device="cpu")
    assert (cfg.dtype, cfg.bn, cfg.tf32) == ("float32", "batch", True)
    assert extract_config("digits", bn="recompute").bn == "recompute"  # the user's flag wins
    assert _extraction_departures("digits", "recompute", "float16") == \
        "bn recompute (paper: batch); float16 (paper: float32)"
    assert extract_config("not-a-dataset").dtype == "float16"  # unknown names: the ExtractConfig defaults
