"""A regression pin, not an oracle: the torch solver's iterates, bit for bit, on a fixed problem.

The expected digests are the solver's own output at commit 80b6cca (before the probes
package split the solver into parts), committed unchanged. They say nothing about whether
that output is right: correctness is judged against scikit-learn in ``test_newton.py``
(``test_matches_sklearn_on_digits_pixels``, ``test_matches_sklearn_on_random_d_features``,
``test_objective_is_sklearns_own``). What this file adds is that a refactor which reorders
one float operation of the Newton, CG, line-search or preconditioner steps changes the final
bytes and fails here. A deliberate change of the solver's arithmetic updates the digests,
after the scikit-learn comparisons pass, and says so in its commit.
"""

import hashlib

import numpy as np
import pytest

from dcgan_features.probes import SolverConfig, fit_torch
from dcgan_features.probes.rows import ArrayRows


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1234)
    X = rng.normal(size=(300, 24)).astype(np.float32)
    X[:, :4] += 3 * rng.normal(size=(300, 1)).astype(np.float32)  # correlated columns: CG has work to do
    W = rng.normal(size=(24, 4))
    y = (X @ W + rng.normal(size=(300, 4))).argmax(1)
    return X, y


def _digest(fit):
    h = hashlib.sha256()
    for t in (fit.coef, fit.intercept):
        h.update(t.numpy().tobytes())
    return h.hexdigest(), fit.newton_steps, fit.passes, fit.converged.tolist()


# name -> (probe, Cs, chunk_rows, SolverConfig kwargs, (sha256 of coef+intercept, newton steps, passes, converged))
CASES = {
    "svm": ("svm", [1e-2, 1.0], None, {}, (
        "5b60f7295417e2413d8a8c3b035063009d376eee3658384647e907aad785982c", 9, 19, [True, True])),
    "logreg": ("logreg", [1e-2, 1.0], None, {}, (
        "2717d1123f79613acdb9de8d489591fc4317970fcaca50586c10eea948ea68b8", 8, 50, [True, True])),
    "svm_chunked_plain_cg": ("svm", [0.1], 70, {"precond_rank": 0}, (
        "daa8ac72fa88e9d25fe6bd8b5b0ace45cddfa2dadce90a08b127071639738a01", 8, 47, [True])),
    "logreg_chunked_rank8_stopped": ("logreg", [0.1, 10.0], 70, {"precond_rank": 8, "max_newton": 3}, (
        "0d8c9683252533d270fabb1b157f9116198ce743bb8d7067021fc6f71106cd7c", 3, 12, [False, False])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cold_start_iterates_are_bit_for_bit(problem, name):
    X, y = problem
    probe, Cs, chunk, cfg, expected = CASES[name]
    fit = fit_torch(probe, ArrayRows(X, y, chunk_rows=chunk), Cs, device="cpu", config=SolverConfig(**cfg))
    assert _digest(fit) == expected


@pytest.mark.parametrize("probe,expected", [
    ("svm", (
        "dbb8719479e6bd3c118deca4153c0ac6792063ec9755c39ac2e31cef0a073a1f", 6, 14, [True, True])),
    ("logreg", (
        "36ec1f133b3c08d46f04b3947bdba2ab324283b64d42338904bc5d77b9ea288e", 5, 29, [True, True])),
])
def test_warm_start_iterates_are_bit_for_bit(problem, probe, expected):
    X, y = problem
    warm = fit_torch(probe, ArrayRows(X, y), [1e-2], device="cpu")
    fit = fit_torch(probe, ArrayRows(X[:200], y[:200]), [1e-2, 0.1], device="cpu", init=warm)
    assert _digest(fit) == expected
