"""``probe`` on a ``kmeans:K`` feature file against Coates, Lee & Ng's own pipeline, in numpy.

The oracle is a transcription of their Matlab, reading the file with plain h5py:

- ``kmeans_demo.m``: ``trainXC_mean = mean(trainXC)``, ``trainXC_sd = sqrt(var(trainXC) + 0.01)``
  (Matlab's ``var`` divides by N - 1), train and test both ``(x - trainXC_mean) ./ trainXC_sd``;
- ``train_svm.m``: one vs all, ``Y`` in {-1, +1}, minimise per class
  ``0.5 |theta_k|^2 + C mean_i max(0, 1 - Y_ik x_i theta_k)^2`` over ``[x, 1]`` (the intercept's
  square left out of the penalty), with L-BFGS (their minFunc; here scipy's); predict the argmax.

Their ``C`` multiplies a mean, liblinear's (ours) a sum: ``C_theirs = C_ours * n_train``. One
difference stays: liblinear (our probe's objective) penalises the intercept, train_svm does not.
So the oracle runs twice: with the intercept penalised it must give our test accuracy (to one
image); as train_svm it is the bound on that one departure (here 3 of 500 test images).
"""

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from dcgan_features.extract.run import ExtractConfig, extract
from dcgan_features.extract.sources.kmeans import KMeansSource
from dcgan_features.extract.sources.kmeans_recipe import KMeansConfig
from dcgan_features.extract.store import FeatureFile
from dcgan_features.probes import estimators
from dcgan_features.probes.protocols import from_file, get_protocol, run_protocol

C_OURS = 0.05


@pytest.fixture(scope="module")
def kmeans_file(tmp_path_factory):
    """kmeans:8 features of digits at 8x8 (3x3 patch positions), through the real extraction."""
    path = tmp_path_factory.mktemp("coates") / "km.h5"
    cfg = ExtractConfig(dataset="digits", splits=("train", "test"), batch_size=256, device="cpu", dtype="float32")
    extract(KMeansSource(8, seed=0, image_size=8, config=KMeansConfig(n_patches=3000, iterations=5)), path, cfg)
    return path


def coates_standardise(path):
    with h5py.File(path, "r") as f:
        Xtr, ytr = f["train/features"][...].astype(np.float64), f["train/labels"][...]
        Xte, yte = f["test/features"][...].astype(np.float64), f["test/labels"][...]
    mean, sd = Xtr.mean(0), np.sqrt(Xtr.var(0, ddof=1) + 0.01)
    return (Xtr - mean) / sd, ytr, (Xte - mean) / sd, yte


def train_svm(X, y, C, n_classes=10, penalise_intercept=False):
    """train_svm.m's objective and gradient (intercept column last, not penalised), L-BFGS;
    ``penalise_intercept``: liblinear's, the intercept's square in the penalty too."""
    X = np.hstack([X, np.ones((len(X), 1))])
    M, N = X.shape
    Y = np.where(y[:, None] == np.arange(n_classes), 1.0, -1.0)

    def loss(w):
        theta = w.reshape(N, n_classes)
        margin = np.maximum(0, 1 - Y * (X @ theta))
        reg = theta if penalise_intercept else theta[:-1]
        g = np.vstack([reg, np.zeros((N - len(reg), n_classes))]) - 2 * C / M * (X.T @ (margin * Y))
        return 0.5 * (reg ** 2).sum() + C * (margin ** 2).mean(0).sum(), g.ravel()

    res = minimize(loss, np.zeros(N * n_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-14})
    return res.x.reshape(N, n_classes)


def probe_all_labels(path, monkeypatch, **kw):
    """run_protocol's digits/all column at the single C_OURS; the matrices it fits and scores on."""
    seen = {}
    real_fit, real_acc = estimators.fit, estimators.LinearProbe.accuracy

    def rows_of(src):
        return torch.cat([x for _, x in src.chunks("cpu")]).double().numpy()

    monkeypatch.setattr(estimators, "fit", lambda p, src, Cs, *a, **k: seen.__setitem__("fit", rows_of(src)) or
                        real_fit(p, src, Cs, *a, **k))
    monkeypatch.setattr(estimators.LinearProbe, "accuracy", lambda self, f, rows: seen.__setitem__(
        rows.split, rows_of(rows)) or real_acc(self, f, rows))
    cfg = dataclasses.replace(get_protocol("digits", c_extend=0), labels_per_class=None)  # the all column only
    with FeatureFile(path) as ff:
        (rec,) = run_protocol("digits", from_file(ff, cfg), ("svm",), cfg, Cs=[C_OURS], device="cpu", **kw)
    return rec, seen


def test_probe_standardises_a_kmeans_file_as_kmeans_demo(kmeans_file, monkeypatch):
    Xtr, _, Xte, _ = coates_standardise(kmeans_file)
    rec, seen = probe_all_labels(kmeans_file, monkeypatch)
    assert rec["postprocess"] == "coates" and rec["standardize"] is False
    np.testing.assert_allclose(seen["fit"], Xtr, rtol=1e-5, atol=1e-5)  # the refit: every train row, in order
    np.testing.assert_allclose(seen["test"], Xte, rtol=1e-5, atol=1e-5)  # test, with train's statistics
    rec, seen = probe_all_labels(kmeans_file, monkeypatch, postprocess=False)  # the flag that turns it off
    with h5py.File(kmeans_file, "r") as f:
        np.testing.assert_allclose(seen["test"], f["test/features"][...], rtol=1e-6)
    assert rec["postprocess"] == "none"


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_probe_on_a_kmeans_file_is_coates_standardised_svm(kmeans_file, monkeypatch, backend):
    Xtr, ytr, Xte, yte = coates_standardise(kmeans_file)

    def oracle(**kw):
        theta = train_svm(Xtr, ytr, C_OURS * len(ytr), **kw)
        return 100 * np.mean(np.argmax(np.hstack([Xte, np.ones((len(Xte), 1))]) @ theta, 1) == yte)

    rec, _ = probe_all_labels(kmeans_file, monkeypatch, backend=backend)
    assert rec["C"] == C_OURS and rec["n_labels"] == len(ytr)
    assert rec["mean"] == pytest.approx(oracle(penalise_intercept=True), abs=0.21)  # one test image of 500
    assert abs(rec["mean"] - oracle()) <= 1.0  # the one departure, liblinear's penalised intercept
    unscaled, _ = probe_all_labels(kmeans_file, monkeypatch, backend=backend, postprocess=False)
    assert abs(unscaled["mean"] - oracle(penalise_intercept=True)) > 0.21  # raw features are told apart


def test_the_record_says_what_was_applied(kmeans_file, run_cli, tmp_path):
    common = ("probe", "digits", "--features", kmeans_file, "--probe", "svm", "--C", "0.05", "--extend-C", "0",
              "--draws", "1", "--labels-per-class", "5", "--device", "cpu")
    for flags, applied in (((), "coates"), (("--no-postprocess",), "none"), (("--standardize",), "unit")):
        out = tmp_path / applied
        code, _, err = run_cli(*common, *flags, "--out", out)
        assert code == 0, err
        records = [json.loads(p.read_text()) for p in out.glob("*.json")]
        assert len(records) == 2 and all(r["postprocess"] == applied for r in records)
