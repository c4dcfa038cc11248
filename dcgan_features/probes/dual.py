"""Few-label fits in the dual: a fit with fewer rows than features solved on the n x n Gram matrix.

Both objectives penalise ``|w|^2`` and see the rows only through ``X w``, so the optimal
``w`` lies in the span of the rows: ``w = X^T a`` (the representer form). With the Gram
matrix ``X X^T = L L^T`` (Cholesky, float64) and ``u = L^T a``, a fit's decision values
are ``X w = L u`` and its penalty ``|w|^2 = |u|^2``: the same problem, exactly, with the
n x n matrix ``L`` as its rows. The intercept stays the appended constant column it is in
the primal, penalised for svm (liblinear's bias, ``intercept_scaling=1``) and free for logreg
(lbfgs's), so C means what it means in scikit-learn. The Newton solver of :mod:`.newton`
then fits every class and every C of the grid on ``L`` (each pass n^2 instead of n d flops
per column) and ``w = X^T L^{-T} u`` takes one pass back. Gradients have the same norm in
both forms (``u -> X^T L^{-T} u`` is an isometry onto the row span), so the stopping rule
stops where the primal's does.

The Gram matrix of 4000 rows has 16M entries against 115M for CIFAR-10's 4000 x 28672
features, and costs ``2 n^2 d`` flops once, as one large GEMM. A warm start (``init``) is
mapped in by its decision values: ``u0 = L^{-1} X w0``.

>>> import numpy as np, torch
>>> from dcgan_features.probes.rows import ArrayRows
>>> X = np.random.default_rng(0).normal(size=(5, 40)).astype(np.float32)
>>> dm = DualMap.fit(ArrayRows(X, np.arange(5)), torch.device("cpu"))
>>> u = torch.randn(5, 3, dtype=torch.float64)  # any u: X w == L u and |w| == |u|
>>> w = dm.X.double().T @ torch.linalg.solve_triangular(dm.L.T, u, upper=True)
>>> bool(torch.allclose(dm.X.double() @ w, dm.L @ u, atol=1e-3)), bool(torch.allclose(w.norm(), u.norm(), rtol=1e-4))
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..core.devices import free_memory
from .linear import LinearFit
from .rows import ArrayRows, resident

FORMS = ("auto", "primal", "dual")


def choose_form(form: str, n_rows: int, dim: int, distributed: bool, device: torch.device) -> str:
    """``primal`` or ``dual`` for a fit of ``n_rows`` x ``dim``: ``auto`` picks the dual when
    the rows are fewer than the features and the Gram matrix fits in half the free memory, never
    under ``torchrun`` (each rank holds a share of the rows). The rows themselves are not
    counted: the primal keeps them resident as well."""
    if form not in FORMS:
        raise ValueError(f"form {form!r}: one of {FORMS}")
    if form != "auto":
        return form
    need = 24 * n_rows * n_rows  # Gram (float32, then float64) + L (float64)
    return "dual" if n_rows < dim and not distributed and need < free_memory(device) // 2 else "primal"


@dataclass
class DualMap:
    """A fit's rows ``X`` (n, d), resident float32, and ``L`` (n, n, float64) with ``L L^T = X X^T``."""

    X: torch.Tensor
    L: torch.Tensor
    labels: object
    split: str
    jitter: float = 0.0  # added to the Gram diagonal when it was singular (duplicate rows), else 0

    @classmethod
    def fit(cls, source, device: torch.device) -> "DualMap":
        """The Gram matrix of ``source``'s rows in one float32 GEMM, factored in float64."""
        rows = resident(source, device, max_bytes=4 * source.n_rows * source.dim)
        X = rows.X
        for _ in rows.chunks(device, whole=True):  # checks every value once, as any first pass does
            pass
        K = (X @ X.T).double()
        K = 0.5 * (K + K.T)
        L, info = torch.linalg.cholesky_ex(K)
        jitter, scale = 0.0, float(K.diagonal().mean().clamp_min(1e-30))
        while int(info) != 0:  # singular (repeated rows): the smallest shift that factors
            if jitter > scale:  # a finite PSD matrix factors by then (the rows were checked finite)
                raise RuntimeError(f"the {len(K)} x {len(K)} Gram matrix does not factor")
            jitter = 1e-10 * scale if jitter == 0.0 else 100 * jitter
            L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(len(K), dtype=K.dtype, device=K.device))
        return cls(X, L, source.labels, source.split, jitter)

    def rows(self) -> ArrayRows:
        """The n x n rows ``L`` of the dual problem, with the fit's labels."""
        return ArrayRows(self.L.float(), self.labels, split=self.split, _checked=True)

    def to_dual(self, init: LinearFit | None) -> LinearFit | None:
        """A primal warm start as a start of the dual problem: ``u0 = L^{-1} X w0`` (one pass)."""
        if init is None or init.coef.shape[1] != self.X.shape[1]:
            return init  # the solver refuses a start of the wrong width, with its message
        P, d, K = init.coef.shape
        Z = (self.X @ init.coef.to(self.X.device).permute(1, 0, 2).reshape(d, P * K)).double()
        U = torch.linalg.solve_triangular(self.L, Z, upper=False)  # (n, P K)
        coef = U.float().view(-1, P, K).permute(1, 0, 2).contiguous().cpu()
        return replace(init, coef=coef)

    def to_primal(self, fit: LinearFit) -> LinearFit:
        """The dual fit's ``u`` as ``w = X^T L^{-T} u`` (one pass), marked ``form="dual"``."""
        P, n, K = fit.coef.shape
        U = fit.coef.to(self.L.device).permute(1, 0, 2).reshape(n, P * K).double()
        A = torch.linalg.solve_triangular(self.L.T, U, upper=True).float()
        coef = (self.X.T @ A).view(-1, P, K).permute(1, 0, 2).contiguous().cpu()
        return replace(fit, coef=coef, passes=fit.passes + 2, form="dual")
