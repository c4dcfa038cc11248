"""probes/dual.py: few-label fits on the Gram matrix minimise scikit-learn's objectives, as the primal does."""

import numpy as np
import pytest
import torch

from dcgan_features.probes import SolverConfig, fit_sklearn, fit_torch, objective
from dcgan_features.probes.dual import choose_form
from dcgan_features.probes.rows import ArrayRows


def _features(digits, n, d, seed=0):
    """Non-negative random features of the digits (ReLU of a random projection), like a conv net's."""
    Xtr, ytr, Xte, yte = digits
    R = np.random.default_rng(seed).normal(size=(64, d)).astype(np.float32) / 8
    f = lambda X: np.maximum(X @ R, 0) + 0.1  # noqa: E731  (a positive mean, as conv features have)
    return f(Xtr[:n]), ytr[:n], f(Xte), yte


def _same_as_sklearn(probe, data, Cs, fit):
    Xtr, ytr, Xte, yte = data
    ref = fit_sklearn(probe, ArrayRows(Xtr, ytr), Cs, tol=1e-7, max_iter=50000)
    assert fit.converged.all() and ref.converged.all()
    p_ours, p_ref = fit.predict(ArrayRows(Xte, yte), "cpu"), ref.predict(ArrayRows(Xte, yte), "cpu")
    for i, C in enumerate(Cs):
        f_ours = objective(probe, fit.coef[i].numpy(), fit.intercept[i].numpy(), Xtr, ytr, C)
        f_ref = objective(probe, ref.coef[i].numpy(), ref.intercept[i].numpy(), Xtr, ytr, C)
        assert abs(f_ours - f_ref) <= 1e-3 * f_ref, (probe, C, f_ours, f_ref)  # the same objective, solved
        assert (p_ours[:, i] == p_ref[:, i]).mean() >= 0.99, (probe, C)


@pytest.mark.parametrize("probe,Cs", [("svm", [1e-1, 1e-3, 1.0]), ("logreg", [1e-2, 1.0])])  # svm: C by C
def test_few_rows_fit_in_the_dual_as_sklearn_does(digits, probe, Cs):
    data = _features(digits, 150, 400)  # n < d
    fit = fit_torch(probe, ArrayRows(data[0], data[1]), Cs, device="cpu")
    assert fit.form == "dual" and fit.coef.shape == (len(Cs), 400, 10)
    _same_as_sklearn(probe, data, Cs, fit)


@pytest.mark.parametrize("probe", ["svm", "logreg"])
def test_many_rows_stay_primal_and_a_forced_dual_agrees(digits, probe):
    data = _features(digits, 400, 60)  # n > d: the Gram matrix is singular (rank 60), factored with a jitter
    Cs = [1e-2, 1.0]
    fit = fit_torch(probe, ArrayRows(data[0], data[1]), Cs, device="cpu")
    assert fit.form == "primal"
    _same_as_sklearn(probe, data, Cs, fit)
    forced = fit_torch(probe, ArrayRows(data[0], data[1]), Cs, device="cpu", config=SolverConfig(form="dual"))
    assert forced.form == "dual"
    _same_as_sklearn(probe, data, Cs, forced)


def test_dual_and_primal_reach_the_same_objective_and_repeated_rows_factor(digits):
    Xtr, ytr, _, _ = _features(digits, 120, 300)
    X, y = np.concatenate([Xtr, Xtr[:10]]), np.concatenate([ytr, ytr[:10]])  # 10 rows twice: K singular
    fits = {form: fit_torch("svm", ArrayRows(X, y), [0.1], device="cpu", config=SolverConfig(form=form, tol=1e-6))
            for form in ("primal", "dual")}
    f = {k: objective("svm", v.coef[0].numpy(), v.intercept[0].numpy(), X, y, 0.1) for k, v in fits.items()}
    assert abs(f["dual"] - f["primal"]) <= 1e-4 * f["primal"], f


def test_warm_start_maps_into_the_dual_and_reaches_the_same_solution(digits):
    data = _features(digits, 200, 300)
    a, b = ArrayRows(data[0][:100], data[1][:100]), ArrayRows(data[0][100:], data[1][100:])
    first = fit_torch("svm", a, [1e-2, 0.1], device="cpu")
    cold = fit_torch("svm", b, [1e-2, 0.1], device="cpu")
    warm = fit_torch("svm", b, [1e-2, 0.1], device="cpu", init=first)
    again = fit_torch("svm", b, [1e-2, 0.1], device="cpu", init=cold)  # from its own solution
    assert warm.form == "dual" and again.newton_steps == 2  # mapped in exactly: one step per C, already converged
    torch.testing.assert_close(warm.coef, cold.coef, atol=2e-3, rtol=0)


def test_auto_picks_the_dual_for_fewer_rows_than_features_only():
    cpu = torch.device("cpu")
    assert choose_form("auto", 4000, 28672, False, cpu) == "dual"
    assert choose_form("auto", 40000, 28672, False, cpu) == "primal"
    assert choose_form("auto", 4000, 28672, True, cpu) == "primal"  # torchrun: rows are sharded
    assert choose_form("primal", 10, 1000, False, cpu) == "primal"


def test_protocol_records_the_form_and_few_label_draws_score_as_sklearns(digits):
    from dcgan_features.probes.protocols import from_arrays, get_protocol, run_protocol

    Xtr, ytr, Xte, yte = digits  # 64 pixels: 30 labelled rows fit in the dual, 997 in the primal
    cfg = get_protocol("digits", labels_per_class=3, draws=3, c_extend=0)
    feats = from_arrays(Xtr, ytr, Xte, yte)
    recs = {b: run_protocol("digits", feats, ("svm",), cfg, Cs=[1e-2, 1.0], seed=0, device="cpu", backend=b)
            for b in ("torch", "sklearn")}
    full, few = recs["torch"]
    assert (full["solver_form"], few["solver_form"]) == ("primal", "dual")
    assert recs["sklearn"][1]["solver_form"] == "dual"  # liblinear's own choice at n < d
    assert few["C"] == recs["sklearn"][1]["C"]
    np.testing.assert_allclose(few["per_draw"], recs["sklearn"][1]["per_draw"], atol=0.21)  # one test image in 500


def test_a_non_finite_value_is_named_in_the_dual_too(digits):
    from dcgan_features.core.errors import UserError

    X, y, _, _ = _features(digits, 50, 200)
    X[7, 3] = np.inf
    with pytest.raises(UserError, match="non-finite feature value in split 'train', row 7"):
        fit_torch("svm", ArrayRows(X, y), [0.1], device="cpu")
