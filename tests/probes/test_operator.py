"""probes/operator.py: each pass over X equals its dense product, in one chunk or many."""

import numpy as np
import pytest
import torch

from dcgan_features.probes.operator import XOperator
from dcgan_features.probes.rows import ArrayRows

N, D, M, K = 23, 5, 2, 3


@pytest.fixture
def dense():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D, generator=g)
    return X, torch.cat([X, torch.ones(N, 1)], 1).double(), g  # X and X~ = [X 1]


@pytest.mark.parametrize("chunk", [None, 4])
def test_passes_equal_dense_products(dense, chunk):
    X, Xt, g = dense
    op = XOperator(ArrayRows(X, chunk_rows=chunk), torch.device("cpu"))
    V = torch.randn(D + 1, M, K, generator=g)
    R = torch.randn(N, M, K, generator=g)
    curv = torch.rand(N, M, K, generator=g)
    dense_xv = torch.einsum("nd,dmk->nmk", Xt, V.double())
    torch.testing.assert_close(op.x_dot(V).double(), dense_xv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(op.xt_dot(R).double(), torch.einsum("nd,nmk->dmk", Xt, R.double()), atol=1e-5, rtol=1e-5)
    HV, U = op.hvp(V, curv, lambda c, u: c * u)  # a diagonal row-space Hessian
    torch.testing.assert_close(U.double(), dense_xv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(HV.double(), torch.einsum("nd,nmk->dmk", Xt, curv.double() * dense_xv),
                               atol=1e-4, rtol=1e-5)
    Q = torch.randn(D + 1, 4, generator=g)
    XQ, Y = op.gram(Q)
    torch.testing.assert_close(XQ.double(), Xt @ Q.double(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Y.double(), Xt.T @ Xt @ Q.double(), atol=1e-4, rtol=1e-5)


def test_hvp_hands_each_chunk_its_own_rows(dense):
    """The row-space Hessian sees the curvature rows of the chunk it multiplies, in row order."""
    X, _, _ = dense
    op = XOperator(ArrayRows(X, chunk_rows=4), torch.device("cpu"))
    seen = []
    op.hvp(torch.zeros(D + 1, 1, 1), torch.arange(N, dtype=torch.float32).view(N, 1, 1),
           lambda c, u: seen.append(c.flatten().tolist()) or c * u)
    assert seen[:-1] == [list(map(float, range(s, min(s + 4, N)))) for s in range(0, N, 4)]
    assert seen[-1] == list(map(float, range(N)))  # the intercept row: every row at once
