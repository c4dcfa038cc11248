"""probes/precond.py: exact inside the subspace, a scaled identity outside it."""

import pytest
import torch

from dcgan_features.probes.operator import XOperator
from dcgan_features.probes.precond import Subspace
from dcgan_features.probes.rows import ArrayRows


def test_preconditioner_inverts_the_hessian_inside_its_subspace():
    g = torch.Generator().manual_seed(0)
    N, D, r = 40, 9, 3
    X = torch.randn(N, D, generator=g) * torch.tensor([8.0, 5, 3] + [0.1] * (D - 3))  # 3 strong directions
    sub = Subspace.fit(XOperator(ArrayRows(X), torch.device("cpu")), r, power_iters=2, reg=torch.ones(D + 1))
    assert sub.passes == 3 and sub.U.shape == (D + 1, r)
    torch.testing.assert_close(sub.U.T @ sub.U, torch.eye(r), atol=1e-5, rtol=0)
    w = torch.rand(N, 1, 1, generator=g)
    Xt = torch.cat([X, torch.ones(N, 1)], 1)
    H = torch.eye(D + 1) + Xt.T @ (w.view(N, 1) * Xt)
    apply = sub.preconditioner(w)
    v = (sub.U @ torch.randn(r, generator=g)).view(D + 1, 1, 1)  # inside span(U)
    Mv = apply(v).view(D + 1)
    # M^-1 v solves (U^T H U) a = U^T v with M^-1 v = U a
    a = torch.linalg.solve(sub.U.T @ H @ sub.U, sub.U.T @ v.view(D + 1))
    torch.testing.assert_close(Mv, sub.U @ a, atol=1e-4, rtol=1e-4)
    ortho = torch.randn(D + 1, generator=g)
    ortho -= sub.U @ (sub.U.T @ ortho)  # outside span(U): scaled by one constant
    ratio = apply(ortho.view(D + 1, 1, 1)).view(D + 1) / ortho
    torch.testing.assert_close(ratio, ratio[:1].expand(D + 1), atol=1e-3, rtol=1e-3)


def test_a_block_that_is_not_positive_definite_falls_back_to_the_plain_step():
    """At a very large C the r x r block can lose definiteness in rounding (a Cholesky failure
    at C >= 1e6 on digits used to abort the probe): those groups take M = I."""
    g = torch.Generator().manual_seed(0)
    N, D, r = 20, 5, 3
    U = torch.linalg.qr(torch.randn(D + 1, r, generator=g)).Q
    sub = Subspace(U, torch.randn(N, r, generator=g), -torch.eye(r), passes=1)  # -I: indefinite at zero curvature
    w = torch.zeros(N, 2, 1)
    w[:, 1] = 1.0  # group 1 gets curvature that makes its block definite again
    sub.XU = sub.XU * 10
    apply = sub.preconditioner(w)
    v = torch.randn(D + 1, 2, 1, generator=g)
    out = apply(v)
    torch.testing.assert_close(out[:, 0], v[:, 0])  # the unpreconditioned step
    assert not torch.allclose(out[:, 1], v[:, 1])  # the definite group keeps its preconditioner


@pytest.mark.slow
def test_svm_at_huge_C_completes(digits):
    """C = 1e6 on digits used to stop with a Cholesky error; it now fits (train rows separated)."""
    from dcgan_features.probes import fit

    X, y = digits[0][:600], digits[1][:600]
    f = fit("svm", ArrayRows(X, y), [1e6], device="cpu")
    W, b = f.coef[0].numpy(), f.intercept[0].numpy()
    assert ((X @ W + b).argmax(1) == y).mean() == 1.0
