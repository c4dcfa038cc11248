"""The X-operator: every pass the solver makes over the rows, and nothing else.

``X~ = [X 1]`` is the row matrix with the constant column of the intercept appended.
Parameters are (d+1, m, K) tensors (m problems of K columns each); row-space values are
(N, m, K). A distributed variant shards the rows and all-reduces what :meth:`XOperator.xt_dot`,
:meth:`~XOperator.hvp` and :meth:`~XOperator.gram` sum over rows; :meth:`~XOperator.x_dot`
needs no communication.

>>> import numpy as np, torch
>>> from dcgan_features.probes.rows import ArrayRows
>>> op = XOperator(ArrayRows(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)), torch.device("cpu"))
>>> V = torch.tensor([1.0, 1.0, 0.5]).view(3, 1, 1)  # w = (1, 1), intercept 0.5
>>> op.x_dot(V).flatten().tolist(), op.xt_dot(torch.ones(2, 1, 1)).flatten().tolist()
([3.5, 7.5], [4.0, 6.0, 2.0])
"""

from __future__ import annotations

from typing import Callable

import torch


class XOperator:
    """``X~ V``, ``X~^T R`` and ``X~^T H_rows(X~ V)`` over a row source, one pass each."""

    def __init__(self, source, device: torch.device):
        self.source, self.device = source, device
        self.n_rows, self.dim = source.n_rows, source.dim

    def row_sum(self, t: torch.Tensor) -> torch.Tensor:
        """A sum over this operator's rows made outside it (a loss), summed over every row
        there is: the identity here, an all-reduce in :class:`ShardedXOperator`."""
        return t

    def x_dot(self, V: torch.Tensor) -> torch.Tensor:
        """Z = [X 1] V for all rows (N, m, K); one pass."""
        d, (_, m, K) = self.dim, V.shape
        Vf = V[:d].reshape(d, m * K)
        out = torch.empty((self.n_rows, m, K), device=self.device)
        for s, x in self.source.chunks(self.device, whole=True):
            out[s:s + x.shape[0]] = torch.addmm(V[d].reshape(1, m * K), x, Vf).view(-1, m, K)
        return out

    def xt_dot(self, R: torch.Tensor) -> torch.Tensor:
        """[X 1]^T R, one pass. R: (N, m, K)."""
        d, N, m, K = self.dim, self.n_rows, R.shape[1], R.shape[2]
        G = torch.zeros(d + 1, m * K, device=self.device)
        for s, x in self.source.chunks(self.device, whole=True):
            G[:d].addmm_(x.T, R[s:s + x.shape[0]].reshape(-1, m * K))
        G[d] = R.reshape(N, m * K).sum(0)
        return G.view(d + 1, m, K)

    def hvp(self, V: torch.Tensor, curv: torch.Tensor,
            hvp_rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(X~^T hvp_rows(curv, X~ V), X~ V) in one pass: both matmuls per chunk.

        ``hvp_rows(curv[rows], U[rows])`` applies the loss's row-space Hessian; the solver
        adds the regulariser's part.
        """
        d, N, (_, m, K) = self.dim, self.n_rows, V.shape
        Vf = V[:d].reshape(d, m * K)
        HV = torch.zeros(d + 1, m * K, device=self.device)
        U = torch.empty((N, m, K), device=self.device)
        for s, x in self.source.chunks(self.device, whole=True):
            e = s + x.shape[0]
            u = torch.addmm(V[d].reshape(1, m * K), x, Vf).view(-1, m, K)
            U[s:e] = u
            HV[:d].addmm_(x.T, hvp_rows(curv[s:e], u).reshape(-1, m * K))
        HV[d] = hvp_rows(curv, U).reshape(N, m * K).sum(0)
        return HV.view(d + 1, m, K), U

    def gram(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(X~ Q, X~^T X~ Q) for Q (d+1, r) in one pass: a subspace iteration's step."""
        d, r = self.dim, Q.shape[1]
        Y = torch.zeros(d + 1, r, device=self.device)
        XQ = torch.empty(self.n_rows, r, device=self.device)
        for s, x in self.source.chunks(self.device, whole=True):
            xq = torch.addmm(Q[d:], x, Q[:d])  # [x 1] Q, (n, r)
            XQ[s:s + x.shape[0]] = xq
            Y[:d].addmm_(x.T, xq)
        Y[d] = XQ.sum(0)
        return XQ, Y


class ShardedXOperator(XOperator):
    """One ``torchrun`` rank's share of the rows: row-space results (``X~ V``) stay local, and
    every product summed over rows (``X~^T R``, the Hessian-vector product, the Gram step, and
    :meth:`row_sum`) is all-reduced, so every rank holds the whole-matrix value. An all-reduce
    hands every rank the same bits (NCCL and gloo reduce each element once, then share it), so
    all ranks take the same solver branches and stop together.
    """

    def __init__(self, source, device: torch.device, ctx):
        super().__init__(source, device)
        self.ctx = ctx

    def row_sum(self, t: torch.Tensor) -> torch.Tensor:
        from ..core.distributed import all_sum

        return all_sum(self.ctx, t.contiguous())

    def xt_dot(self, R: torch.Tensor) -> torch.Tensor:
        return self.row_sum(super().xt_dot(R))

    def hvp(self, V, curv, hvp_rows):
        HV, U = super().hvp(V, curv, hvp_rows)
        return self.row_sum(HV), U

    def gram(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        XQ, Y = super().gram(Q)
        return XQ, self.row_sum(Y)
