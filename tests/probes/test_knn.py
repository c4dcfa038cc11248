"""knn.py: the chunked weighted kNN equals a brute-force numpy oracle."""

import numpy as np
import pytest

from dcgan_features.core.errors import UserError
from dcgan_features.probes.knn import knn_accuracy, knn_predict
from dcgan_features.probes.rows import ArrayRows


def oracle(Xtr, ytr, Xte, k, T, K):
    """VISSL / solo-learn: cosine similarity, top-k, votes weighted exp(s / T), argmax."""
    a = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)
    b = Xte / np.linalg.norm(Xte, axis=1, keepdims=True)
    S = b @ a.T
    out = []
    for s in S:
        top = np.argsort(-s, kind="stable")[:k]
        votes = np.zeros(K)
        np.add.at(votes, ytr[top], np.exp(s[top] / T))
        out.append(votes.argmax())
    return np.array(out)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    ytr, yte = rng.integers(0, 5, 300), rng.integers(0, 5, 70)
    centers = rng.normal(size=(5, 16))
    Xtr = (centers[ytr] + 1.5 * rng.normal(size=(300, 16))).astype(np.float32)
    Xte = (centers[yte] + 1.5 * rng.normal(size=(70, 16))).astype(np.float32)
    return Xtr, ytr, Xte, yte


@pytest.mark.parametrize("k,T", [(1, 0.1), (7, 0.1), (200, 0.1), (20, 1.0), (500, 0.05)])
def test_matches_bruteforce_oracle(data, k, T):
    Xtr, ytr, Xte, yte = data
    # small chunks on both sides: the running top-k crosses many train chunks per test chunk
    pred = knn_predict(ArrayRows(Xtr, ytr, chunk_rows=23), ArrayRows(Xte, yte), 5, k=k, temperature=T,
                       device="cpu", test_chunk=16)
    np.testing.assert_array_equal(pred, oracle(Xtr.astype(np.float64), ytr, Xte.astype(np.float64), k, T, 5))


def test_subsets_and_accuracy(data):
    Xtr, ytr, Xte, yte = data
    rows = np.arange(0, 300, 2)
    pred = knn_predict(ArrayRows(Xtr, ytr, chunk_rows=10).subset(rows), ArrayRows(Xte, yte), k=9, device="cpu")
    np.testing.assert_array_equal(pred, oracle(Xtr[rows].astype(np.float64), ytr[rows], Xte.astype(np.float64), 9,
                                               0.1, 5))
    acc = knn_accuracy(ArrayRows(Xtr, ytr), ArrayRows(Xte, yte), k=20, device="cpu")
    assert acc == pytest.approx((oracle(Xtr, ytr, Xte, 20, 0.1, 5) == yte).mean())
    assert acc > 0.5  # the classes are separable enough that kNN must beat chance (0.2) by far


def test_bad_input(data):
    Xtr, ytr, Xte, yte = data
    with pytest.raises(UserError, match="k >= 1"):
        knn_predict(ArrayRows(Xtr, ytr), ArrayRows(Xte, yte), k=0, device="cpu")
    with pytest.raises(UserError, match="temperature"):
        knn_predict(ArrayRows(Xtr, ytr), ArrayRows(Xte, yte), temperature=0, device="cpu")
    with pytest.raises(UserError, match="columns"):
        knn_predict(ArrayRows(Xtr, ytr), ArrayRows(Xte[:, :5], yte), device="cpu")
    with pytest.raises(UserError, match="labelled"):
        knn_predict(ArrayRows(Xtr, np.full(300, -1)), ArrayRows(Xte, yte), device="cpu")
