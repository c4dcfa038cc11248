"""The loss terms of every (C, class) group on stored decision values ``Z = [X 1] W``.

The solver never touches the rows here: the terms are functions of ``Z`` (N, nC, K) and
the labels only, so one pass over X (done by :mod:`.operator`) serves every group.
Groups: one per (C, class) for the one-vs-rest svm, one per C for the multinomial logreg.

>>> import torch
>>> loss = RowLoss("svm", torch.tensor([0, 1]), torch.tensor([1.0]), K=2)
>>> loss.loss(torch.zeros(2, 1, 2)).tolist()  # C * sum of (1 - y z)^2 over both rows, per class
[[2.0, 2.0]]
"""

from __future__ import annotations

import torch


class RowLoss:
    """Loss terms of every (C, class) group on stored decision values Z (N, nC, K)."""

    def __init__(self, probe: str, y: torch.Tensor, Cs: torch.Tensor, K: int):
        self.svm = probe == "svm"
        self.C = Cs.view(1, -1, 1)
        if self.svm:
            self.Y = torch.where(torch.arange(K, device=y.device)[None, :] == y[:, None], 1.0, -1.0)[:, None, :]
        else:
            self.y = y.view(-1, 1, 1).expand(-1, Cs.numel(), 1)

    def group(self, a: torch.Tensor) -> torch.Tensor:
        """Sum over rows (axis 0) into the group shape: (nC, K) for svm, (nC, 1) for logreg."""
        return a.sum(0) if self.svm else a.sum((0, 2)).unsqueeze(-1)

    def gdot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-group inner product of two parameter-shaped (d+1, nC, K) tensors, in float64."""
        return self.group(a.double() * b.double())

    def loss(self, Z: torch.Tensor) -> torch.Tensor:
        if self.svm:
            m = torch.clamp_min(1.0 - self.Y * Z, 0.0)
            return (self.C * m * m).double().sum(0)
        nll = -torch.log_softmax(Z, 2).gather(2, self.y)  # (N, nC, 1)
        return (self.C * nll).double().sum((0, 2)).unsqueeze(-1)

    def terms(self, Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss per group, dloss/dZ, curvature state used by hvp_rows and diag weights)."""
        if self.svm:
            m = torch.clamp_min(1.0 - self.Y * Z, 0.0)
            loss = (self.C * m * m).double().sum(0)
            dZ = -2.0 * self.C * self.Y * m
            curv = 2.0 * self.C * (m > 0).float()  # generalised Hessian of the squared hinge
            return loss, dZ, curv
        logp = torch.log_softmax(Z, 2)
        loss = (-self.C * logp.gather(2, self.y)).double().sum((0, 2)).unsqueeze(-1)
        p = logp.exp()
        dZ = self.C * p
        dZ.scatter_add_(2, self.y, -self.C.expand(Z.shape[0], -1, 1))
        return loss, dZ, p

    def hvp_rows(self, curv: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Row-space Hessian applied to U = X v: what X^T must multiply."""
        if self.svm:
            return curv * U
        pu = curv * U
        return self.C * (pu - curv * pu.sum(2, keepdim=True))

    def diag_weight(self, curv: torch.Tensor) -> torch.Tensor:
        return curv if self.svm else self.C * curv * (1.0 - curv)
