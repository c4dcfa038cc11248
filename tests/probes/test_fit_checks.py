"""Results that are what they say (issue 23): C bounded to float32's range, a fit with non-finite weights
refused, a cold-start fit that never moved not reported as converged."""

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import UserError
from dcgan_features.probes import estimators
from dcgan_features.probes.c_search import search_C
from dcgan_features.probes.linear import MAX_C, LinearFit
from dcgan_features.probes.rows import ArrayRows


@pytest.fixture
def rows(digits):
    X, y, _, _ = digits
    return ArrayRows(X[:200], y[:200])


def _fake(coef_value):
    def fit_torch(probe, source, Cs, n_classes, device, **kw):
        P, d, K = len(Cs), source.dim, 10
        return LinearFit(probe, np.asarray(Cs, float), torch.full((P, d, K), coef_value), torch.zeros(P, K),
                         np.ones(P, bool))
    return fit_torch


def test_cold_start_fit_that_never_moved_is_not_converged(rows, monkeypatch):
    """The solver once returned its zero start with converged: true at C = 1e20 (chance accuracy)."""
    monkeypatch.setattr(estimators, "fit_torch", _fake(0.0))
    assert estimators.fit("svm", rows, [1.0], "torch", 10, "cpu").converged.tolist() == [False]
    warm = estimators.fit("svm", rows, [1.0], "torch", 10, "cpu", init=object())  # a warm start may be optimal
    assert warm.converged.tolist() == [True]


def test_fit_with_non_finite_weights_is_one_line(rows, monkeypatch):
    monkeypatch.setattr(estimators, "fit_torch", _fake(float("nan")))
    with pytest.raises(UserError, match="the svm fit at C=1000 gave non-finite weights"):
        estimators.fit("svm", rows, [1e3], "torch", 10, "cpu")


def test_real_fit_still_converges(rows):
    """The check does not flag a good fit: the real solver on 200 digits rows."""
    fit = estimators.fit("svm", rows, [0.1], "torch", 10, "cpu")
    assert fit.converged.tolist() == [True] and bool(fit.coef.abs().sum() > 0)


@pytest.mark.parametrize("grid", ["1e20", "1e11", "1e-13", "0.1,1e300"])
def test_probe_C_beyond_float32_range_one_line(run_cli, tmp_path, grid):
    feats = tmp_path / "f.h5"
    feats.write_bytes(b"")
    run_cli.error("probe", "digits", "--features", feats, "--C", grid, "--out", tmp_path / "o",
                  match="C values must lie in [1e-12, 1e+10]")
    assert not (tmp_path / "o").exists()


def test_c_search_never_extends_past_the_bound():
    seen = []

    def evaluate(Cs):  # accuracy grows with C: the search wants to go up forever
        seen.extend(Cs)
        return [np.log10(c) for c in Cs]

    s = search_C([1e8, 1e9], evaluate, max_extend=5)
    assert max(seen) == MAX_C and s.extended == 1 and s.at_edge
