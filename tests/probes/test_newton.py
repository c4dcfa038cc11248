"""probes/newton.py: the torch solvers minimise scikit-learn's objectives, in memory, chunked and from disk."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcgan_features.nets.architectures import get_arch
from dcgan_features.core.errors import UserError
from dcgan_features.probes import newton
from dcgan_features.probes import SolverConfig, fit, fit_torch, objective
from dcgan_features.probes.linear import check_Cs
from dcgan_features.probes import fit_sklearn
from dcgan_features.probes.rows import ArrayRows


@pytest.fixture(scope="module")
def d_features(digits):
    """Features of a tiny random-init D over the digits images: every block, 4x4 max-pooled (dim 448)."""
    Xtr, ytr, Xte, yte = digits
    _, D = get_arch("dcgan32").build(4, seed=0)
    D.train()

    def feats(X):
        img = torch.from_numpy(X.reshape(-1, 1, 8, 8) * 2 - 1).repeat(1, 3, 1, 1)
        h = F.interpolate(img, size=32, mode="bilinear", antialias=True)
        out = []
        with torch.no_grad():
            for block in D.blocks.values():
                h = block(h)
                out.append(F.adaptive_max_pool2d(h, 4).flatten(1))
        return torch.cat(out, 1).numpy()

    return feats(Xtr[:400]), ytr[:400], feats(Xte), yte


def _compare(probe, data, Cs, sk_tol):
    Xtr, ytr, Xte, yte = data
    ours = fit_torch(probe, ArrayRows(Xtr, ytr), Cs, device="cpu")
    ref = fit_sklearn(probe, ArrayRows(Xtr, ytr), Cs, tol=sk_tol, max_iter=20000)
    assert ours.converged.all() and ref.converged.all()
    p_ours, p_ref = ours.predict(ArrayRows(Xte, yte), "cpu"), ref.predict(ArrayRows(Xte, yte), "cpu")
    for i, C in enumerate(Cs):
        f_ours = objective(probe, ours.coef[i].numpy(), ours.intercept[i].numpy(), Xtr, ytr, C)
        f_ref = objective(probe, ref.coef[i].numpy(), ref.intercept[i].numpy(), Xtr, ytr, C)
        # both solutions judged by the same float64 objective: ours is no worse than 1e-3 relative
        assert f_ours <= f_ref * (1 + 1e-3), (probe, C, f_ours, f_ref)
        assert f_ours >= f_ref * (1 - 1e-3), (probe, C, f_ours, f_ref)  # and the objective is the same one
        assert (p_ours[:, i] == p_ref[:, i]).mean() >= 0.99, (probe, C)
    return ours


@pytest.mark.parametrize("probe", ["svm", "logreg"])
def test_matches_sklearn_on_digits_pixels(digits, probe):
    Xtr, ytr, Xte, yte = digits
    n = 1297 if probe == "svm" else 600  # lbfgs at tol 1e-6 is the slow part of this file
    Cs = [1e-3, 1e-2, 1e-1, 1.0] if probe == "svm" else [1e-3, 1e-1]
    ours = _compare(probe, (Xtr[:n], ytr[:n], Xte, yte), Cs, 1e-6)
    assert ours.accuracy(ArrayRows(Xte, yte), "cpu")[-1] > 0.85


@pytest.mark.parametrize("probe,Cs", [("svm", [1e-3, 1e-2, 1e-1]), ("logreg", [1e-3, 1e-2])])
def test_matches_sklearn_on_random_d_features(d_features, probe, Cs):
    _compare(probe, d_features, Cs, 1e-6)


def test_objective_is_sklearns_own(digits):
    """Our objective function reproduces what LinearSVC minimises: its solution beats a perturbed one."""
    Xtr, ytr = digits[0][:300], digits[1][:300]
    ref = fit_sklearn("svm", ArrayRows(Xtr, ytr), [0.1], tol=1e-8, max_iter=20000)
    coef, icpt = ref.coef[0].numpy(), ref.intercept[0].numpy()
    f0 = objective("svm", coef, icpt, Xtr, ytr, 0.1)
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert objective("svm", coef + 1e-2 * rng.normal(size=coef.shape), icpt, Xtr, ytr, 0.1) > f0
        assert objective("svm", coef, icpt + 1e-2 * rng.normal(size=icpt.shape), Xtr, ytr, 0.1) > f0


@pytest.mark.parametrize("probe", ["svm", "logreg"])
def test_chunked_and_float16_fit_equal_in_memory_fit(d_features, probe):
    Xtr, ytr = d_features[0][:250], d_features[1][:250]
    Cs = [1e-3, 1e-2]
    whole = fit_torch(probe, ArrayRows(Xtr, ytr), Cs, device="cpu")
    chunked = fit_torch(probe, ArrayRows(Xtr, ytr, chunk_rows=37), Cs, device="cpu")
    assert whole.passes > 5  # several passes, so chunking matters on every one
    for i, C in enumerate(Cs):
        f_w = objective(probe, whole.coef[i].numpy(), whole.intercept[i].numpy(), Xtr, ytr, C)
        f_c = objective(probe, chunked.coef[i].numpy(), chunked.intercept[i].numpy(), Xtr, ytr, C)
        assert abs(f_w - f_c) <= 1e-5 * abs(f_w)
    torch.testing.assert_close(chunked.coef, whole.coef, rtol=0, atol=1e-3 * float(whole.coef.abs().max()))
    # float16 storage (what the feature file holds) is widened chunk by chunk to float32 on
    # every pass when there is no room for a float32 copy
    X16 = Xtr.astype(np.float16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(newton, "free_memory", lambda device: 0)
        half = fit_torch(probe, ArrayRows(X16, ytr, chunk_rows=50), Cs, device="cpu")
    full = fit_torch(probe, ArrayRows(X16.astype(np.float32), ytr), Cs, device="cpu")
    torch.testing.assert_close(half.coef, full.coef, rtol=0, atol=1e-3 * float(full.coef.abs().max()))


def test_subset_fit_equals_fit_on_copied_rows(digits):
    Xtr, ytr = digits[0], digits[1]
    rows = np.arange(0, 1297, 3)
    with pytest.MonkeyPatch.context() as mp:  # no room for a copy: rows gathered on every pass
        mp.setattr(newton, "free_memory", lambda device: 0)
        a = fit_torch("svm", ArrayRows(Xtr, ytr, chunk_rows=100).subset(rows), [0.01], device="cpu")
    copied = fit_torch("svm", ArrayRows(Xtr, ytr, chunk_rows=100).subset(rows), [0.01], device="cpu")  # copied once
    b = fit_torch("svm", ArrayRows(Xtr[rows], ytr[rows]), [0.01], device="cpu")
    torch.testing.assert_close(a.coef, b.coef, rtol=0, atol=1e-4)
    torch.testing.assert_close(copied.coef, b.coef, rtol=0, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("probe", ["svm", "logreg"])
def test_cuda_fit_with_tf32_cg_matches_cpu_fit(d_features, probe):
    Xtr, ytr, Xte, yte = d_features
    Cs = [1e-3, 1e-1]
    cpu = fit_torch(probe, ArrayRows(Xtr, ytr), Cs, device="cpu")
    gpu = fit_torch(probe, ArrayRows(Xtr, ytr), Cs, device="cuda")
    assert gpu.converged.all() and gpu.device.startswith("cuda")
    for i, C in enumerate(Cs):
        f_c = objective(probe, cpu.coef[i].numpy(), cpu.intercept[i].numpy(), Xtr, ytr, C)
        f_g = objective(probe, gpu.coef[i].numpy(), gpu.intercept[i].numpy(), Xtr, ytr, C)
        assert abs(f_g - f_c) <= 1e-3 * f_c, (C, f_g, f_c)
    test = ArrayRows(Xte, yte)
    assert (gpu.predict(test, "cpu") == cpu.predict(test, "cpu")).mean() >= 0.99


def test_grid_fit_equals_one_fit_per_C_and_warm_start_saves_passes(digits):
    Xtr, ytr = digits[0], digits[1]
    src = ArrayRows(Xtr, ytr)
    grid = fit_torch("logreg", src, [1e-2, 1.0], device="cpu")
    alone = fit_torch("logreg", src, [1.0], device="cpu")
    f_grid = objective("logreg", grid.coef[1].numpy(), grid.intercept[1].numpy(), Xtr, ytr, 1.0)
    f_alone = objective("logreg", alone.coef[0].numpy(), alone.intercept[0].numpy(), Xtr, ytr, 1.0)
    assert abs(f_grid - f_alone) <= 1e-5 * f_alone
    warm = fit_torch("logreg", src, [1.0], device="cpu", init=alone)
    assert warm.converged.all() and warm.passes < alone.passes
    assert abs(objective("logreg", warm.coef[0].numpy(), warm.intercept[0].numpy(), Xtr, ytr, 1.0) - f_alone) \
        <= 1e-5 * f_alone


def test_preconditioner_changes_speed_not_solution(d_features):
    Xtr, ytr = d_features[0], d_features[1]
    plain = fit_torch("svm", ArrayRows(Xtr, ytr), [0.1], device="cpu", config=SolverConfig(precond_rank=0))
    pre = fit_torch("svm", ArrayRows(Xtr, ytr), [0.1], device="cpu", config=SolverConfig(precond_rank=64))
    f_plain = objective("svm", plain.coef[0].numpy(), plain.intercept[0].numpy(), Xtr, ytr, 0.1)
    f_pre = objective("svm", pre.coef[0].numpy(), pre.intercept[0].numpy(), Xtr, ytr, 0.1)
    assert abs(f_plain - f_pre) <= 1e-5 * f_plain
    assert pre.passes < plain.passes


def test_bad_inputs_are_user_errors(digits):
    Xtr, ytr = digits[0][:50], digits[1][:50]
    for bad in ([0.0], [-1.0], [], [float("nan")], [float("inf")]):
        with pytest.raises(UserError, match="positive"):
            check_Cs(bad)
    with pytest.raises(UserError, match="positive"):
        fit("svm", ArrayRows(Xtr, ytr), [1.0, 0.0])
    with pytest.raises(UserError, match="unknown probe"):
        fit("lasso", ArrayRows(Xtr, ytr), [1.0])
    with pytest.raises(UserError, match="unknown backend"):
        fit("svm", ArrayRows(Xtr, ytr), [1.0], backend="liblinear")
    with pytest.raises(UserError, match="unlabelled"):
        fit_torch("svm", ArrayRows(Xtr, np.full(50, -1)), [1.0], device="cpu")
    X = Xtr.copy()
    X[17, 5] = np.inf
    with pytest.raises(UserError, match=r"row 17 \(column 5\)"):
        fit_torch("svm", ArrayRows(X, ytr, chunk_rows=8), [1.0], device="cpu")
    X[17, 5] = np.nan
    with pytest.raises(UserError, match="non-finite"):
        fit_sklearn("logreg", ArrayRows(X, ytr), [1.0])




def test_cg_solves_each_group_to_its_tolerance_and_freezes_done_groups():
    g = torch.Generator().manual_seed(0)
    n = 8
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    H = (A @ A.T + n * torch.eye(n, dtype=torch.float64)).float()  # SPD, moderately conditioned
    G = torch.randn(n, 2, 1, generator=g)  # two groups
    done = torch.tensor([[False], [True]])
    gdot = lambda a, b: (a.double() * b.double()).sum(0)  # noqa: E731
    calls = []

    def hvp(p):
        calls.append(1)
        Hp = torch.einsum("ij,jmk->imk", H, p)
        return Hp, Hp[:1]  # any "X p" is carried along into Zs

    s, Zs, passes = newton.cg(hvp, lambda v: v, gdot, G, done, torch.full((2, 1), 1e-6, dtype=torch.float64),
                              torch.zeros(1, 2, 1), max_steps=50)
    assert passes == len(calls) and passes <= n + 2
    exact = torch.linalg.solve(H.double(), -G[:, 0, 0].double())
    torch.testing.assert_close(s[:, 0, 0].double(), exact, atol=1e-4, rtol=1e-4)
    assert bool((s[:, 1] == 0).all())  # a done group does not move
    torch.testing.assert_close(Zs, torch.einsum("ij,jmk->imk", H, s)[:1], atol=1e-3, rtol=1e-4)
    _, _, capped = newton.cg(hvp, lambda v: v, gdot, G, done, torch.zeros(2, 1, dtype=torch.float64),
                             torch.zeros(1, 2, 1), max_steps=3)
    assert capped == 3


def test_line_search_halves_until_armijo_holds_per_group():
    # f(w) = 1/2 w^2 per group, at w = 1 with gradient 1: the step s = -4 overshoots, -1 is exact
    W = torch.ones(1, 2, 1)
    s = torch.tensor([-4.0, -1.0]).view(1, 2, 1)
    Z = torch.zeros(1, 2, 1)
    f = lambda W_, Z_: 0.5 * (W_.double() ** 2).sum(0)  # noqa: E731
    gdot = lambda a, b: (a.double() * b.double()).sum(0)  # noqa: E731
    t, ok, f_new = newton.line_search(f, f(W, Z), W.clone(), W, s, Z, Z, torch.zeros(2, 1, dtype=torch.bool), gdot)
    assert t.flatten().tolist() == [0.25, 1.0] and bool(ok.all())
    torch.testing.assert_close(f_new.flatten(), torch.tensor([0.0, 0.0], dtype=torch.float64))
    t, ok, _ = newton.line_search(f, f(W, Z), W.clone(), W, -s, Z, Z, torch.zeros(2, 1, dtype=torch.bool), gdot,
                                  max_halvings=5)
    assert not bool(ok.any())  # uphill: never accepted (the solver then takes no step)


def test_newton_loop_alone_reaches_sklearns_solution_and_stops_at_once_from_it(digits):
    """``setup`` + ``newton`` without ``fit_torch``: the loop is a part of its own, as tron is."""
    from sklearn.linear_model import LogisticRegression

    from dcgan_features.core.distributed import current

    X, y = digits[0][:300].astype(np.float32), digits[1][:300]
    cfg = SolverConfig()
    pb = newton.setup("logreg", ArrayRows(X, y), np.array([0.1]), torch.from_numpy(y), 10, torch.device("cpu"), cfg,
                      current())
    res = newton.newton(pb, torch.zeros(X.shape[1] + 1, 1, 10), None, cfg, warm=False)
    ref = LogisticRegression(C=0.1, tol=1e-10, max_iter=10000).fit(X, y)
    assert bool(res.converged.all()) and res.steps > 1
    np.testing.assert_allclose(res.W[:-1, 0].numpy(), ref.coef_.T, atol=2e-3)
    again = newton.newton(pb, res.W.clone(), pb.op.x_dot(res.W), cfg, warm=True)  # from the solution: one gradient pass
    assert again.steps == 1 and again.passes == 1 and bool(again.converged.all())
