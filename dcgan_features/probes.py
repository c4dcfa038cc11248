"""Linear probes: one-vs-rest L2-SVM and multinomial logistic regression, in torch, on CPU or GPU.

Objectives (scikit-learn's, so a C means the same in both backends):

- ``svm``: per class k, ``1/2 |w_k|^2 + C sum_i max(0, 1 - y_ik w_k.[x_i, 1])^2`` with
  ``y_ik = +-1``. The intercept is the weight of an appended constant-1 feature and IS
  regularised, exactly as liblinear / ``LinearSVC(intercept_scaling=1)``.
- ``logreg``: ``1/2 |W|^2 + C sum_i -log softmax(W x_i + b)_{y_i}``, intercept NOT
  regularised, as ``LogisticRegression`` (lbfgs). With two classes scikit-learn fits one
  binary model instead, whose C means twice as much; every protocol here has 10 classes.

The torch solver is a truncated Newton method (Newton-CG with a backtracking line search)
run on every C of the grid and every class at once: parameters are ``W`` of shape
(D+1, nC, K) and each pass over the rows computes ``X @ W`` for all of them with one matmul.
A pass is one of: a gradient pass, or one Hessian-vector product inside CG. The line
search needs no pass: it reuses ``X w`` and the ``X p`` of every CG step. CG is
preconditioned in the top eigenspace of ``[X 1]^T [X 1]`` (found once per fit by two
passes of randomized subspace iteration), where conv features put most of their energy.
Rows come from a :mod:`~dcgan_features.rows` source, so X may be an in-memory tensor or an
HDF5 split read in chunks; when it fits in half the free memory, the source is first copied
once into one float32 matrix on the solver's device. It stops where scikit-learn stops at the
same ``tol`` (default 1e-4): liblinear's primal rule per class and C for svm, lbfgs's ``gtol``
on scikit-learn's scaling of the objective per C for logreg (:class:`SolverConfig`). On a GPU
the CG passes run in TF32.

>>> import numpy as np
>>> from dcgan_features.rows import ArrayRows
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(80, 5)).astype(np.float32); y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
>>> fit = fit_torch("svm", ArrayRows(X, y), Cs=[0.01, 1.0], device="cpu")
>>> tuple(fit.coef.shape), fit.converged.tolist()
((2, 5, 4), [True, True])
>>> bool(fit.accuracy(ArrayRows(X, y))[1] > 0.9)
True
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import UserError
from .devices import resolve_device
from .rows import free_memory, resident

PROBES = ("svm", "logreg")


@dataclass(frozen=True)
class SolverConfig:
    """Stopping rule and limits of the torch solver."""

    # scikit-learn's ``tol``, and its stopping rule for each probe:
    #   svm    (liblinear's primal)  |g| <= tol * max(min(pos, neg), 1) / n * |g(w=0)|, per class
    #   logreg (lbfgs)               max |g| <= tol * C * n, per C: lbfgs's gtol on scikit-learn's
    #                                objective, which is ours divided by C * n
    tol: float = 1e-4
    max_newton: int = 100
    max_cg: int = 200  # CG steps (= passes over X) per Newton step
    # Rank of the subspace preconditioner (0: plain CG). Features of a conv net are far from
    # isotropic: a few directions (the mean above all) carry most of |X|^2, so plain or
    # diagonally preconditioned CG needs hundreds of passes per Newton step at large C.
    # Solving exactly in the top-``rank`` eigenspace of [X 1]^T [X 1] removes them.
    # Per Newton step it costs N r^2 flops per (C, class), about r^2 / 2D passes: 128 measured
    # best on 2000 x 3584 conv features (passes 972 -> 581, time 3x lower); only its diagonal
    # (Nystrom-style) was worse than plain CG there.
    precond_rank: int = 128
    power_iters: int = 1  # randomized subspace iterations (each one pass of width rank)
    # CG stops at |r| <= cg_tol |g|, as liblinear's TRON does. Measured on 5000 x 3584 conv
    # features, 4 C values, under the earlier stopping rule |g| <= 1e-5 |g0|: 0.1 took 422
    # passes (svm) and 701 (logreg); the superlinear forcing sequence min(0.1, sqrt(|g|/|g0|))
    # took 517 and 841, and min(0.1, |g|/|g0|) took 926 (svm).
    cg_tol: float = 0.1
    # On a GPU, Hessian-vector products (all CG passes) multiply in TF32: they only steer the
    # Newton direction, and an inexact Hessian costs a few CG steps at most. The gradient and
    # the decision values X w it is taken at stay in full float32, recomputed every Newton step.
    tf32_hvp: bool = True


@dataclass
class LinearFit:
    """The fitted probes of one C grid: ``coef`` (nC, D, K), ``intercept`` (nC, K)."""

    probe: str
    Cs: np.ndarray
    coef: torch.Tensor
    intercept: torch.Tensor
    converged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    newton_steps: int = 0
    passes: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    backend: str = "torch"

    @property
    def n_classes(self) -> int:
        return self.coef.shape[2]

    def select(self, i: int) -> "LinearFit":
        """The fit of the i-th C alone (e.g. to warm-start a refit)."""
        return LinearFit(self.probe, self.Cs[i:i + 1], self.coef[i:i + 1], self.intercept[i:i + 1],
                         self.converged[i:i + 1], self.newton_steps, self.passes, self.seconds, self.device,
                         self.backend)

    def scores(self, source, device: str | torch.device = "auto") -> torch.Tensor:
        """(N, nC, K) decision values of every probe of the grid, one pass over ``source``."""
        dev = resolve_device(device)
        P, D, K = self.coef.shape
        if source.dim != D:
            raise UserError(f"features have {source.dim} columns but the probe was fitted on {D}")
        Wf = self.coef.to(dev).permute(1, 0, 2).reshape(D, P * K)
        b = self.intercept.to(dev).reshape(1, P * K)
        out = torch.empty((source.n_rows, P, K), device=dev)
        for s, x in source.chunks(dev):
            out[s:s + x.shape[0]] = torch.addmm(b, x, Wf).view(-1, P, K)
        return out

    def predict(self, source, device: str | torch.device = "auto") -> np.ndarray:
        """(N, nC) predicted class of every row under every C."""
        return self.scores(source, device).argmax(2).cpu().numpy()

    def accuracy(self, source, device: str | torch.device = "auto") -> np.ndarray:
        """(nC,) fraction of ``source``'s labelled rows predicted right, for every C."""
        pred = self.predict(source, device)
        return (pred == source.labels[:, None]).mean(0)


def check_Cs(Cs: Sequence[float]) -> np.ndarray:
    Cs = np.asarray(list(Cs), dtype=np.float64)
    if Cs.size == 0 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise UserError(f"C values must be positive and finite, got {Cs.tolist()}; e.g. --C 1e-3,1e-2,1e-1")
    return Cs


def check_probe(probe: str) -> None:
    if probe not in PROBES:
        raise UserError(f"unknown probe {probe!r}; choose from {', '.join(PROBES)}")


def probe_labels(source, n_classes: int | None) -> tuple[np.ndarray, int]:
    """A source's labels as int64 and the class count, checked the way both backends need them."""
    y = np.asarray(source.labels, dtype=np.int64)
    if y.size == 0:
        raise UserError(f"split {source.split!r} has no rows to fit a probe on")
    if y.min() < 0:
        raise UserError(f"split {source.split!r} has unlabelled rows (label -1); a probe needs labels")
    K = int(y.max()) + 1 if n_classes is None else int(n_classes)
    if K < 2 or y.max() >= K:
        raise UserError(f"a probe needs at least 2 classes with labels < n_classes, got labels up to {y.max()}")
    return y, K


# --------------------------------------------------------------------- objective


def objective(probe: str, coef: np.ndarray, intercept: np.ndarray, X: np.ndarray, y: np.ndarray,
              C: float) -> float:
    """The primal objective of one fitted probe, in float64: what both backends minimise.

    ``coef`` (D, K), ``intercept`` (K,); for svm the sum of the K one-vs-rest objectives.
    """
    check_probe(probe)
    coef = np.asarray(coef, np.float64)
    intercept = np.asarray(intercept, np.float64)
    Z = np.asarray(X, np.float64) @ coef + intercept
    if probe == "svm":
        Y = np.where(np.arange(coef.shape[1])[None, :] == np.asarray(y)[:, None], 1.0, -1.0)
        return float(0.5 * (np.sum(coef**2) + np.sum(intercept**2))
                     + C * np.sum(np.maximum(0.0, 1.0 - Y * Z) ** 2))
    m = Z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(Z - m).sum(1))
    return float(0.5 * np.sum(coef**2) + C * np.sum(lse - Z[np.arange(len(y)), y]))


# ----------------------------------------------------------------- torch solver


class _Problem:
    """Loss terms of every (C, class) on stored decision values Z (N, nC, K)."""

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


class _Subspace:
    """Top eigenvectors U of [X 1]^T [X 1] (randomized subspace iteration) and X~U, for preconditioning.

    For one group with Hessian ``H = diag(reg) + X~^T diag(w) X~`` the preconditioner solves
    exactly inside span(U), with ``U^T H U`` (r x r, from the stored X~U: no pass over X), and
    scales the complement by that block's smallest diagonal entry, as Nystrom PCG does.
    """

    def __init__(self, U: torch.Tensor, XU: torch.Tensor, reg_U: torch.Tensor, passes: int):
        self.U, self.XU, self.reg_U, self.passes = U, XU, reg_U, passes

    @classmethod
    def fit(cls, source, rank: int, power_iters: int, reg: torch.Tensor, dev: torch.device) -> "_Subspace":
        D = source.dim
        gen = torch.Generator().manual_seed(0)  # the preconditioner only changes speed, never the solution
        Y = torch.randn(D + 1, rank, generator=gen).to(dev)
        for _ in range(power_iters + 1):
            Q = torch.linalg.qr(Y).Q  # (D+1) x r, orthonormal
            Y = torch.zeros(D + 1, rank, device=dev)
            XQ = torch.empty(source.n_rows, rank, device=dev)
            for s, x in source.chunks(dev, whole=True):
                xq = torch.addmm(Q[D:], x, Q[:D])  # [x 1] Q, (n, r)
                XQ[s:s + x.shape[0]] = xq
                Y[:D].addmm_(x.T, xq)
            Y[D] = XQ.sum(0)
        # Rayleigh-Ritz in span(Q): eigenvectors of Q^T X~^T X~ Q
        _, V = torch.linalg.eigh((Q.T @ Y).double())
        V = V.float()
        U = Q @ V
        return cls(U, XQ @ V, U.T @ (reg[:, None] * U), power_iters + 1)

    def preconditioner(self, weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> M^{-1} v`` for every group, ``weight`` (N, nC, K) the row-space curvature."""
        N, P, K = weight.shape
        r = self.XU.shape[1]
        w = weight.reshape(N, P * K)
        U = self.U
        A = torch.empty(P * K, r, r, dtype=torch.float64, device=w.device)
        for g in range(P * K):  # U^T H_g U = reg_U + (X~U)^T diag(w_g) (X~U)
            wg, XUg = w[:, g], self.XU
            rows = wg.nonzero().squeeze(1)
            if rows.numel() < 0.8 * N:  # squared hinge: only margin violators have curvature
                wg, XUg = wg[rows], XUg[rows]
            A[g] = (self.reg_U + (XUg * wg[:, None]).T @ XUg).double()
        A = 0.5 * (A + A.transpose(1, 2))
        c = A.diagonal(dim1=1, dim2=2).min(1).values.clamp_min(1e-12)  # (G,) complement scale
        L = torch.linalg.cholesky(A + 1e-10 * c[:, None, None] * torch.eye(r, dtype=A.dtype, device=A.device))
        A_inv = torch.cholesky_inverse(L).float()  # a batched matmul per CG step, not two triangular solves
        inv_c = 1.0 / c.float()

        def apply(v: torch.Tensor) -> torch.Tensor:
            vf = v.reshape(-1, P * K)
            Uv = U.T @ vf  # (r, G)
            sol = torch.bmm(A_inv, Uv.T.unsqueeze(-1)).squeeze(-1).T  # (U^T H U)^-1 U^T v
            out = vf * inv_c + U @ (sol - Uv * inv_c)  # = U sol + (v - U U^T v) / c
            return out.view_as(v)

        return apply


@contextmanager
def _matmul_precision(precision: str | None):
    """``torch.set_float32_matmul_precision(precision)`` inside the block only (None: unchanged)."""
    if precision is None:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def fit_torch(probe: str, source, Cs: Sequence[float], n_classes: int | None = None,
              device: str | torch.device = "auto", config: SolverConfig = SolverConfig(),
              init: LinearFit | None = None, log: Callable[[str], None] | None = None) -> LinearFit:
    """Fit ``probe`` for every C in ``Cs`` on the labelled rows of ``source`` at once.

    ``init`` warm-starts from a fit of the same probe (one C, broadcast, or one per C).
    """
    check_probe(probe)
    Cs = check_Cs(Cs)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    y_np, K = probe_labels(source, n_classes)
    # Hundreds of passes follow: pay a subset's gather or float16's widening once, in half the
    # memory still free, rather than on every pass.
    source = resident(source, dev, free_memory(dev) // 2)
    N, D, P = source.n_rows, source.dim, len(Cs)
    y = torch.from_numpy(y_np).to(dev)
    prob = _Problem(probe, y, torch.tensor(Cs, dtype=torch.float32, device=dev), K)
    reg = torch.ones(D + 1, 1, 1, device=dev)
    if probe == "logreg":
        reg[D] = 0.0  # lbfgs LogisticRegression leaves the intercept unpenalised
    passes = 0

    def x_dot(V: torch.Tensor) -> torch.Tensor:
        """Z = [X 1] V for all rows (N, nC, K); one pass."""
        Vf = V[:D].reshape(D, P * K)
        out = torch.empty((N, P, K), device=dev)
        for s, x in source.chunks(dev, whole=True):
            out[s:s + x.shape[0]] = torch.addmm(V[D].reshape(1, P * K), x, Vf).view(-1, P, K)
        return out

    def xt_dot(R: torch.Tensor) -> torch.Tensor:
        """[X 1]^T R, one pass. R: (N, m, K)."""
        m = R.shape[1]
        G = torch.zeros(D + 1, m * K, device=dev)
        for s, x in source.chunks(dev, whole=True):
            G[:D].addmm_(x.T, R[s:s + x.shape[0]].reshape(-1, m * K))
        G[D] = R.reshape(N, m * K).sum(0)
        return G.view(D + 1, m, K)

    def hvp(V: torch.Tensor, curv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H V, X V) in one pass: both matmuls per chunk."""
        Vf = V[:D].reshape(D, P * K)
        HV = torch.zeros(D + 1, P * K, device=dev)
        U = torch.empty((N, P, K), device=dev)
        for s, x in source.chunks(dev, whole=True):
            e = s + x.shape[0]
            u = torch.addmm(V[D].reshape(1, P * K), x, Vf).view(-1, P, K)
            U[s:e] = u
            HV[:D].addmm_(x.T, prob.hvp_rows(curv[s:e], u).reshape(-1, P * K))
        HV[D] = prob.hvp_rows(curv, U).reshape(N, P * K).sum(0)
        return HV.view(D + 1, P, K) + reg * V, U

    def gdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return prob.group(a.double() * b.double())

    if init is None:
        W = torch.zeros(D + 1, P, K, device=dev)
        Z = torch.zeros(N, P, K, device=dev)
    else:
        if init.probe != probe or init.coef.shape[1:] != (D, K) or init.coef.shape[0] not in (1, P):
            raise UserError("warm start must come from the same probe on the same features")
        W = torch.cat([init.coef.to(dev).permute(1, 0, 2), init.intercept.to(dev)[None]], 0).expand(D + 1, P, K)
        W = W.contiguous().float()
        Z = x_dot(W)
        passes += 1

    tf32 = config.tf32_hvp and dev.type == "cuda"
    sub = None
    if config.precond_rank > 0:
        sub = _Subspace.fit(source, min(config.precond_rank, D + 1, N), config.power_iters, reg.view(-1), dev)
        passes += sub.passes
    if probe == "svm":
        pos = torch.bincount(y, minlength=K).double()
        frac = torch.clamp_min(torch.minimum(pos, N - pos), 1.0) / N  # (K,)
        stop = lambda G, gnorm, gnorm0: gnorm <= config.tol * frac[None] * gnorm0  # noqa: E731
    else:
        scale = config.tol * torch.tensor(Cs, dtype=torch.float64, device=dev)[:, None] * N  # (nC, 1)
        stop = lambda G, gnorm, gnorm0: G.abs().amax((0, 2)).double()[:, None] <= scale  # noqa: E731
    converged = None
    gnorm0 = None
    steps = 0
    for steps in range(1, config.max_newton + 1):
        if tf32 and steps > 1:  # X w from TF32 steps drifts; the gradient needs it exact
            Z = x_dot(W)
            passes += 1
        loss, dZ, curv = prob.terms(Z)
        if gnorm0 is None and init is not None:
            _, dZ0, _ = prob.terms(torch.zeros_like(Z))  # |g(0)| sets the scale of the stopping rule
            Gboth = xt_dot(torch.cat([dZ, dZ0], 1))
            G, G0 = Gboth[:, :P] + reg * W, Gboth[:, P:]
            gnorm0 = gdot(G0, G0).sqrt()
        else:
            G = xt_dot(dZ) + reg * W
        passes += 1
        gnorm = gdot(G, G).sqrt()
        if gnorm0 is None:
            gnorm0 = gnorm
        fval = loss + 0.5 * gdot(reg * W, W)
        done = stop(G, gnorm, gnorm0)
        converged = done
        if log:
            log(f"{probe} newton {steps}: max |g|/|g0| {float((gnorm / gnorm0).max()):.2e}, "
                f"f {fval.sum().item():.6g}, passes {passes}")
        if bool(done.all()):
            break
        precond = sub.preconditioner(prob.diag_weight(curv)) if sub is not None else (lambda v: v)
        # preconditioned CG on H s = -g, one problem per group, frozen once done
        s = torch.zeros_like(W)
        Zs = torch.zeros_like(Z)
        r = -G * (~done).float()[None]
        z = precond(r)
        p = z.clone()
        rz = gdot(r, z)
        cg_tol = config.cg_tol * gnorm
        active = (~done) & (gnorm > cg_tol)
        for _ in range(config.max_cg):
            if not bool(active.any()):
                break
            with _matmul_precision("high" if tf32 else None):
                Hp, Up = hvp(p, curv)
            passes += 1
            pHp = gdot(p, Hp)
            alpha = torch.where(active & (pHp > 0), rz / pHp.clamp_min(1e-300), 0.0).float()
            s += alpha[None] * p
            Zs += alpha[None] * Up
            r -= alpha[None] * Hp
            active &= gdot(r, r).sqrt() > cg_tol
            z = precond(r)
            rz_new = gdot(r, z)
            beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), 0.0).float()
            p = z + beta[None] * p
            rz = rz_new
        # backtracking (Armijo) line search per group on stored X w and X s: no pass over X
        gs = gdot(G, s)
        t = torch.ones_like(gs)
        for _ in range(40):
            tf = t.float()
            W_new = W + tf[None] * s
            f_new = prob.loss(Z + tf[None] * Zs) + 0.5 * gdot(reg * W_new, W_new)
            ok = (f_new <= fval + 1e-4 * t * gs) | done
            if bool(ok.all()):
                break
            t = torch.where(ok, t, 0.5 * t)
        # float32 rows put a floor under |g|: a group whose Newton step no longer lowers f
        # beyond rounding (or cannot lower it at all) is as converged as it can get
        floor = (~ok) | ((fval - f_new <= 1e-7 * fval.abs()) & (gnorm <= 1e-3 * gnorm0))
        t = torch.where(ok, t, 0.0).float()
        W += t[None] * s
        Z += t[None] * Zs
        converged = done | (floor & ~done)
        if bool(converged.all()):
            break
    conv = converged.reshape(P, -1).all(1).cpu().numpy()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return LinearFit(probe, Cs, W[:D].permute(1, 0, 2).contiguous().cpu(), W[D].contiguous().cpu(), conv,
                     steps, passes, time.perf_counter() - t0, str(dev), "torch")


def fit(probe: str, source, Cs: Sequence[float], backend: str = "torch", n_classes: int | None = None,
        device: str | torch.device = "auto", **kwargs) -> LinearFit:
    """Fit with either backend; ``kwargs`` go to :func:`fit_torch` or :func:`.probes_sklearn.fit_sklearn`."""
    if backend == "torch":
        return fit_torch(probe, source, Cs, n_classes, device, **kwargs)
    if backend == "sklearn":
        from .probes_sklearn import fit_sklearn

        return fit_sklearn(probe, source, Cs, n_classes, **kwargs)
    raise UserError(f"unknown backend {backend!r}; choose torch or sklearn")
