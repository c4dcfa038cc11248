"""The subspace preconditioner of the solver's CG steps.

Features of a conv net are far from isotropic: a few directions (the mean above all) carry
most of ``|X|^2``, so plain or diagonally preconditioned CG needs hundreds of passes per
Newton step at large C. :class:`Subspace` finds the top eigenvectors ``U`` of
``[X 1]^T [X 1]`` once per fit (randomized subspace iteration, ``power_iters + 1`` passes)
and keeps ``X~ U``; every Newton step then builds, without a pass over X, a preconditioner
that solves exactly inside span(U) and scales the complement, as Nystrom PCG does.

>>> import numpy as np, torch
>>> from dcgan_features.probes.rows import ArrayRows
>>> from dcgan_features.probes.operator import XOperator
>>> X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
>>> sub = Subspace.fit(XOperator(ArrayRows(X), torch.device("cpu")), rank=7, power_iters=1, reg=torch.ones(7))
>>> apply = sub.preconditioner(torch.ones(50, 1, 1))  # the full space: M^-1 is H^-1 itself
>>> Xt = torch.from_numpy(np.c_[X, np.ones(50, np.float32)])
>>> H = torch.eye(7) + Xt.T @ Xt
>>> v = torch.randn(7, 1, 1, generator=torch.Generator().manual_seed(1))
>>> torch.allclose(H @ apply(v).view(7), v.view(7), atol=1e-3)
True
"""

from __future__ import annotations

from typing import Callable

import torch


class Subspace:
    """Top eigenvectors U of [X 1]^T [X 1] (randomized subspace iteration) and X~U, for preconditioning.

    For one group with Hessian ``H = diag(reg) + X~^T diag(w) X~`` the preconditioner solves
    exactly inside span(U), with ``U^T H U`` (r x r, from the stored X~U: no pass over X), and
    scales the complement by that block's smallest diagonal entry, as Nystrom PCG does.
    """

    def __init__(self, U: torch.Tensor, XU: torch.Tensor, reg_U: torch.Tensor, passes: int,
                 row_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t):
        self.U, self.XU, self.reg_U, self.passes, self.row_sum = U, XU, reg_U, passes, row_sum

    @classmethod
    def fit(cls, op, rank: int, power_iters: int, reg: torch.Tensor) -> "Subspace":
        """From an :class:`~.operator.XOperator`; ``reg`` (d+1,) the regulariser's diagonal."""
        d, dev = op.dim, op.device
        gen = torch.Generator().manual_seed(0)  # the preconditioner only changes speed, never the solution
        Y = torch.randn(d + 1, rank, generator=gen).to(dev)
        for _ in range(power_iters + 1):
            Q = torch.linalg.qr(Y).Q  # (d+1) x r, orthonormal
            XQ, Y = op.gram(Q)
        # Rayleigh-Ritz in span(Q): eigenvectors of Q^T X~^T X~ Q
        _, V = torch.linalg.eigh((Q.T @ Y).double())
        V = V.float()
        U = Q @ V
        return cls(U, XQ @ V, U.T @ (reg[:, None] * U), power_iters + 1, op.row_sum)

    def preconditioner(self, weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> M^{-1} v`` for every group, ``weight`` (N, nC, K) the row-space curvature."""
        N, P, K = weight.shape
        r = self.XU.shape[1]
        w = weight.reshape(N, P * K)
        U = self.U
        gram = torch.empty(P * K, r, r, device=w.device)
        for g in range(P * K):  # U^T H_g U = reg_U + (X~U)^T diag(w_g) (X~U)
            wg, XUg = w[:, g], self.XU
            rows = wg.nonzero().squeeze(1)
            if rows.numel() < 0.8 * N:  # squared hinge: only margin violators have curvature
                wg, XUg = wg[rows], XUg[rows]
            gram[g] = (XUg * wg[:, None]).T @ XUg
        A = (self.reg_U + self.row_sum(gram)).double()  # the rows' part summed over every rank's rows
        A = 0.5 * (A + A.transpose(1, 2))
        c = A.diagonal(dim1=1, dim2=2).min(1).values.clamp_min(1e-12)  # (G,) complement scale
        eye = torch.eye(r, dtype=A.dtype, device=A.device)
        L, info = torch.linalg.cholesky_ex(A + 1e-10 * c[:, None, None] * eye)
        bad = info != 0  # at a very large C the block can lose definiteness in float32 rounding
        if bad.any():  # those groups take the unpreconditioned step (M = I), as plain CG would
            L[bad] = eye
            c = torch.where(bad, torch.ones_like(c), c)
        A_inv = torch.cholesky_inverse(L).float()  # a batched matmul per CG step, not two triangular solves
        inv_c = 1.0 / c.float()

        def apply(v: torch.Tensor) -> torch.Tensor:
            vf = v.reshape(-1, P * K)
            Uv = U.T @ vf  # (r, G)
            sol = torch.bmm(A_inv, Uv.T.unsqueeze(-1)).squeeze(-1).T  # (U^T H U)^-1 U^T v
            out = vf * inv_c + U @ (sol - Uv * inv_c)  # = U sol + (v - U U^T v) / c
            return out.view_as(v)

        return apply
