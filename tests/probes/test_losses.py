"""probes/losses.py: loss, gradient and Hessian terms agree with autograd, per (C, class) group."""

import pytest
import torch

from dcgan_features.probes.losses import RowLoss


@pytest.mark.parametrize("probe", ["svm", "logreg"])
def test_terms_are_the_derivatives_of_the_loss(probe):
    g = torch.Generator().manual_seed(0)
    N, K = 17, 3
    y = torch.randint(0, K, (N,), generator=g)
    Cs = torch.tensor([0.1, 2.0])
    loss = RowLoss(probe, y, Cs, K)
    Z = torch.randn(N, 2, K, generator=g, dtype=torch.float64).float().requires_grad_()
    total, dZ, curv = loss.terms(Z)
    assert total.shape == ((2, K) if probe == "svm" else (2, 1))
    torch.testing.assert_close(total, loss.loss(Z))
    (auto_dZ,) = torch.autograd.grad(loss.loss(Z).sum(), Z, create_graph=True)
    torch.testing.assert_close(dZ, auto_dZ)
    U = torch.randn(N, 2, K, generator=g)
    (auto_hu,) = torch.autograd.grad((auto_dZ * U).sum(), Z)  # d/dZ (dZ . U) = H U
    torch.testing.assert_close(loss.hvp_rows(curv, U), auto_hu, atol=1e-5, rtol=1e-5)
    a, b = torch.randn(4, 2, K, generator=g), torch.randn(4, 2, K, generator=g)
    assert loss.gdot(a, b).dtype == torch.float64 and loss.gdot(a, b).shape == total.shape
