"""The torch solver of the linear probes (objectives in :mod:`dcgan_features.probes`).

It is a truncated Newton method (Newton-CG with a backtracking line search)
run on every C of the grid and every class at once: parameters are ``W`` of shape
(d+1, nC, K) and each pass over the rows computes ``X @ W`` for all of them with one matmul.
A pass is one of: a gradient pass, or one Hessian-vector product inside CG. The line
search needs no pass: it reuses ``X w`` and the ``X p`` of every CG step. CG is
preconditioned in the top eigenspace of ``[X 1]^T [X 1]`` (found once per fit by two
passes of randomized subspace iteration), where conv features put most of their energy.
Rows come from a :mod:`.rows` source, so X may be an in-memory tensor or an
HDF5 split read in chunks; when it fits in half the free memory, the source is first copied
once into one float32 matrix on the solver's device. It stops where scikit-learn stops at the
same ``tol`` (default 1e-4): liblinear's primal rule per class and C for svm, lbfgs's ``gtol``
on scikit-learn's scaling of the objective per C for logreg (:class:`SolverConfig`). On a GPU
the CG passes run in TF32.

As liblinear's ``tron.cpp`` keeps ``trpcg`` apart from ``tron`` and both apart from the
``fun_obj`` they minimise, the parts are separate and tested alone: :func:`newton` is the
Newton loop (``tron``); :func:`cg` solves one Newton system (``trpcg``); :func:`line_search`
picks the step; a :class:`Problem` (built by :func:`setup`) is the objective: its passes over X
are an :class:`.operator.XOperator`, its loss terms a :class:`.losses.RowLoss`, its
preconditioner a :class:`.precond.Subspace`. :func:`fit_torch` puts them together.

>>> import numpy as np
>>> from dcgan_features.probes.rows import ArrayRows
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(80, 5)).astype(np.float32); y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
>>> fit = fit_torch("svm", ArrayRows(X, y), Cs=[0.01, 1.0], device="cpu")
>>> tuple(fit.coef.shape), fit.converged.tolist()
((2, 5, 4), [True, True])
>>> bool(fit.accuracy(ArrayRows(X, y))[1] > 0.9)
True
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from ..core.devices import resolve_device
from ..core.errors import UserError
from .linear import LinearFit, check_Cs, check_probe, probe_labels
from .dual import DualMap, choose_form
from .losses import RowLoss
from .operator import ShardedXOperator, XOperator
from .precond import Subspace
from .rows import free_memory, resident

Tensor = torch.Tensor


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
    # Rank of the subspace preconditioner (0: plain CG; see :mod:`.precond` for why it pays).
    # Per Newton step it costs N r^2 flops per (C, class), about r^2 / 2D passes.
    precond_rank: int = 128
    power_iters: int = 1  # randomized subspace iterations (each one pass of width rank)
    cg_tol: float = 0.1  # CG stops at |r| <= cg_tol |g|, as liblinear's TRON does
    # On a GPU, Hessian-vector products (all CG passes) multiply in TF32: they only steer the
    # Newton direction, and an inexact Hessian costs a few CG steps at most. The gradient and
    # the decision values X w it is taken at stay in full float32, recomputed every Newton step.
    tf32_hvp: bool = True
    # "auto": a fit with fewer rows than features is solved on its n x n Gram matrix (:mod:`.dual`),
    # the same objective; "primal" / "dual" force one form.
    form: str = "auto"


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


def cg(hvp: Callable[[Tensor], tuple[Tensor, Tensor]], precond: Callable[[Tensor], Tensor],
       gdot: Callable[[Tensor, Tensor], Tensor], G: Tensor, done: Tensor, tol: Tensor, Z_like: Tensor,
       max_steps: int) -> tuple[Tensor, Tensor, int]:
    """Preconditioned CG on ``H s = -G``, one problem per group, each frozen once ``|r| <= tol``.

    ``hvp(p)`` returns ``(H p, X~ p)`` (one pass); groups already ``done`` do not move.
    Returns the step ``s``, its decision values ``X~ s`` (for a line search without a pass)
    and the number of passes made.
    """
    s = torch.zeros_like(G)
    Zs = torch.zeros_like(Z_like)
    r = -G * (~done).float()[None]
    z = precond(r)
    p = z.clone()
    rz = gdot(r, z)
    gnorm = gdot(G, G).sqrt()
    active = (~done) & (gnorm > tol)
    passes = 0
    for _ in range(max_steps):
        if not bool(active.any()):
            break
        Hp, Up = hvp(p)
        passes += 1
        pHp = gdot(p, Hp)
        alpha = torch.where(active & (pHp > 0), rz / pHp.clamp_min(1e-300), 0.0).float()
        s += alpha[None] * p
        Zs += alpha[None] * Up
        r -= alpha[None] * Hp
        active &= gdot(r, r).sqrt() > tol
        z = precond(r)
        rz_new = gdot(r, z)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), 0.0).float()
        p = z + beta[None] * p
        rz = rz_new
    return s, Zs, passes


def line_search(f: Callable[[Tensor, Tensor], Tensor], fval: Tensor, G: Tensor, W: Tensor, s: Tensor,
                Z: Tensor, Zs: Tensor, done: Tensor, gdot: Callable[[Tensor, Tensor], Tensor],
                max_halvings: int = 40) -> tuple[Tensor, Tensor, Tensor]:
    """Backtracking (Armijo) step ``t`` per group along ``s``, on stored X w and X s: no pass over X.

    ``f(W, Z)`` is the objective at parameters W with decision values Z. Returns ``t``
    (float64, per group), whether the Armijo condition holds (``ok``) and ``f`` there.
    """
    gs = gdot(G, s)
    t = torch.ones_like(gs)
    for _ in range(max_halvings):
        tf = t.float()
        f_new = f(W + tf[None] * s, Z + tf[None] * Zs)
        ok = (f_new <= fval + 1e-4 * t * gs) | done
        if bool(ok.all()):
            break
        t = torch.where(ok, t, 0.5 * t)
    return t, ok, f_new


def _stopping_rule(probe: str, config: SolverConfig, y: Tensor, K: int, N: int, Cs: np.ndarray, dev: torch.device
                   ) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """scikit-learn's rule at ``config.tol``: done(G, |g| per group, |g(0)| per group) per group."""
    if probe == "svm":
        pos = torch.bincount(y, minlength=K).double()
        frac = torch.clamp_min(torch.minimum(pos, N - pos), 1.0) / N  # (K,)
        return lambda G, gnorm, gnorm0: gnorm <= config.tol * frac[None] * gnorm0
    scale = config.tol * torch.tensor(Cs, dtype=torch.float64, device=dev)[:, None] * N  # (nC, 1)
    return lambda G, gnorm, gnorm0: G.abs().amax((0, 2)).double()[:, None] <= scale


def _initial(op: XOperator, probe: str, init: LinearFit | None, P: int, K: int) -> tuple[Tensor, Tensor | None]:
    """Starting parameters W (d+1, nC, K) and, for a warm start, their decision values (one pass)."""
    d, dev = op.dim, op.device
    if init is None:
        return torch.zeros(d + 1, P, K, device=dev), None
    if init.probe != probe or init.coef.shape[1:] != (d, K) or init.coef.shape[0] not in (1, P):
        raise UserError("warm start must come from the same probe on the same features")
    W = torch.cat([init.coef.to(dev).permute(1, 0, 2), init.intercept.to(dev)[None]], 0).expand(d + 1, P, K)
    W = W.contiguous().float()
    return W, op.x_dot(W)


def _gradient(op: XOperator, prob: RowLoss, reg: Tensor, W: Tensor, dZ: Tensor, at_zero: bool
              ) -> tuple[Tensor, Tensor | None]:
    """The gradient ``X~^T dZ + reg W`` in one pass; ``at_zero``: also the gradient at W = 0, in
    the same pass (a warm start's ``|g(0)|`` sets the scale of the stopping rule)."""
    if not at_zero:
        return op.xt_dot(dZ) + reg * W, None
    P = W.shape[1]
    _, dZ0, _ = prob.terms(torch.zeros_like(dZ))
    Gboth = op.xt_dot(torch.cat([dZ, dZ0], 1))
    return Gboth[:, :P] + reg * W, Gboth[:, P:]


@dataclass
class Problem:
    """One fit's objective on its rows, as liblinear's ``fun_obj`` is to ``tron``: the passes over
    X (``op``), the loss terms of every (C, class) group, the regulariser's diagonal, the stopping
    rule, and the preconditioner's subspace (None: plain CG)."""

    probe: str
    op: XOperator
    loss: RowLoss
    reg: Tensor  # (d+1, 1, 1): 1 per weight, 0 on logreg's unpenalised intercept
    stop: Callable[[Tensor, Tensor, Tensor], Tensor]
    sub: Subspace | None = None
    tf32: bool = False  # Hessian-vector products in TF32 (a GPU only)

    def gdot(self, a: Tensor, b: Tensor) -> Tensor:
        return self.loss.gdot(a, b)

    def objective(self, W: Tensor, Z: Tensor) -> Tensor:
        """f per group at parameters W whose decision values are Z: no pass over X."""
        return self.op.row_sum(self.loss.loss(Z)) + 0.5 * self.gdot(self.reg * W, W)

    def hvp(self, V: Tensor, curv: Tensor) -> tuple[Tensor, Tensor]:
        """(H V, X~ V) at the curvature ``curv``: one pass."""
        with _matmul_precision("high" if self.tf32 else None):
            HV, U = self.op.hvp(V, curv, self.loss.hvp_rows)
        return HV + self.reg * V, U

    def preconditioner(self, curv: Tensor) -> Callable[[Tensor], Tensor]:
        return self.sub.preconditioner(self.loss.diag_weight(curv)) if self.sub is not None else (lambda v: v)


def setup(probe: str, source, Cs: np.ndarray, y: Tensor, K: int, dev: torch.device, config: SolverConfig,
          ctx) -> Problem:
    """The :class:`Problem` of ``probe`` on this process's rows of ``source`` (all of them, or its
    ``torchrun`` rank's share), with its preconditioner fitted (``Problem.sub.passes`` passes)."""
    from ..core.distributed import share

    N, d = source.n_rows, source.dim  # N: every rank's rows together
    lo, hi = share(N, ctx.world, ctx.rank)
    if ctx.enabled:
        source = source.subset(np.arange(lo, hi))
    # Hundreds of passes follow: pay a subset's gather or float16's widening once, in half the
    # memory still free, rather than on every pass.
    source = resident(source, dev, free_memory(dev) // 2)
    op = ShardedXOperator(source, dev, ctx) if ctx.enabled else XOperator(source, dev)
    loss = RowLoss(probe, y[lo:hi], torch.tensor(Cs, dtype=torch.float32, device=dev), K)
    reg = torch.ones(d + 1, 1, 1, device=dev)
    if probe == "logreg":
        reg[d] = 0.0  # lbfgs LogisticRegression leaves the intercept unpenalised
    sub = None
    if config.precond_rank > 0:
        sub = Subspace.fit(op, min(config.precond_rank, d + 1, N), config.power_iters, reg.view(-1))
    return Problem(probe, op, loss, reg, _stopping_rule(probe, config, y, K, N, Cs, dev), sub,
                   config.tf32_hvp and dev.type == "cuda")


@dataclass
class NewtonResult:
    """Where the Newton loop stopped: parameters W (d+1, nC, K), per (C, class) group whether it
    converged, the Newton steps taken and the passes over X made."""

    W: Tensor
    converged: Tensor
    steps: int
    passes: int


def newton(pb: Problem, W: Tensor, Z: Tensor | None, config: SolverConfig, warm: bool, passes: int = 0,
           log: Callable[[str], None] | None = None) -> NewtonResult:
    """liblinear's ``tron`` loop with a line search in place of the trust region: from W (whose
    decision values are Z, or zeros when Z is None), Newton steps by :func:`cg` and
    :func:`line_search` until every group meets ``pb.stop``. ``warm``: W is not zero, so the
    gradient at zero (the stopping rule's scale) is taken in the first gradient pass as well.
    ``passes``: those made before (counted on from there)."""
    op, gdot = pb.op, pb.gdot
    if Z is None:
        Z = torch.zeros(op.n_rows, *W.shape[1:], device=W.device)
    converged = None
    gnorm0 = None
    steps = 0
    for steps in range(1, config.max_newton + 1):
        if pb.tf32 and steps > 1:  # X w from TF32 steps drifts; the gradient needs it exact
            Z = op.x_dot(W)
            passes += 1
        loss, dZ, curv = pb.loss.terms(Z)
        loss = op.row_sum(loss)
        G, G0 = _gradient(op, pb.loss, pb.reg, W, dZ, at_zero=gnorm0 is None and warm)
        passes += 1
        if G0 is not None:
            gnorm0 = gdot(G0, G0).sqrt()
        gnorm = gdot(G, G).sqrt()
        if gnorm0 is None:
            gnorm0 = gnorm
        fval = loss + 0.5 * gdot(pb.reg * W, W)
        done = pb.stop(G, gnorm, gnorm0)
        converged = done
        if log:
            log(f"{pb.probe} newton {steps}: max |g|/|g0| {float((gnorm / gnorm0).max()):.2e}, "
                f"f {fval.sum().item():.6g}, passes {passes}")
        if bool(done.all()):
            break
        s, Zs, cg_passes = cg(lambda p: pb.hvp(p, curv), pb.preconditioner(curv), gdot, G, done,
                              config.cg_tol * gnorm, Z, config.max_cg)
        passes += cg_passes
        t, ok, f_new = line_search(pb.objective, fval, G, W, s, Z, Zs, done, gdot)
        # float32 rows put a floor under |g|: a group whose Newton step no longer lowers f
        # beyond rounding (or cannot lower it at all) is as converged as it can get
        floor = (~ok) | ((fval - f_new <= 1e-7 * fval.abs()) & (gnorm <= 1e-3 * gnorm0))
        t = torch.where(ok, t, 0.0).float()
        W += t[None] * s
        Z += t[None] * Zs
        converged = done | (floor & ~done)
        if bool(converged.all()):
            break
    return NewtonResult(W, converged, steps, passes)


def fit_torch(probe: str, source, Cs: Sequence[float], n_classes: int | None = None,
              device: str | torch.device = "auto", config: SolverConfig = SolverConfig(),
              init: LinearFit | None = None, log: Callable[[str], None] | None = None) -> LinearFit:
    """Fit ``probe`` for every C in ``Cs`` on the labelled rows of ``source`` at once.

    ``init`` warm-starts from a fit of the same probe (one C, broadcast, or one per C).
    In a ``torchrun`` group (:func:`dcgan_features.core.distributed.current`) every rank keeps a
    contiguous share of the rows resident and the sums over rows are all-reduced
    (:class:`.operator.ShardedXOperator`): every rank runs the same iterations and returns
    the same fit, equal to one process's up to float32 summation order. With fewer rows than
    features (and ``config.form`` "auto") the fit is made in the dual, on the rows' Gram matrix
    (:mod:`.dual`): the same objective; ``LinearFit.form`` says which.
    """
    from ..core.distributed import current

    check_probe(probe)
    Cs = check_Cs(Cs)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    y_np, K = probe_labels(source, n_classes)
    ctx = current()
    if choose_form(config.form, source.n_rows, source.dim, ctx.enabled, dev) == "dual":
        fit = _fit_dual(probe, source, Cs, y_np, K, dev, config, ctx, init, log)
    else:
        fit = _fit_primal(probe, source, Cs, y_np, K, dev, config, ctx, init, log)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    fit.seconds = time.perf_counter() - t0
    return fit


def _fit_dual(probe: str, source, Cs: np.ndarray, y_np: np.ndarray, K: int, dev: torch.device,
              config: SolverConfig, ctx, init: LinearFit | None, log) -> LinearFit:
    """The fit on the n x n rows of :class:`.dual.DualMap`, mapped back to the features.

    The squared hinge goes along the grid, C by C in increasing order, each C warm-started from
    the one before (or from ``init``'s own C): its large-C groups need several times the Newton
    steps of the small ones, which a batch would carry through every pass (at 2000 x 7168
    synthetic rows, 5 C: 14.6 s against 81.7 s for the batch). logreg's groups converge
    together: one batch.
    """
    dual = DualMap.fit(source, dev)
    # The subspace costs N r^2 flops per group and Newton step, a pass 2 N D: with D = N rows
    # (the dual's, not the features') r <= sqrt(N) / 2 keeps it under a pass (16 at 1000 rows).
    config = replace(config, precond_rank=min(config.precond_rank, max(8, math.isqrt(source.n_rows) // 2)))
    rows, start = dual.rows(), dual.to_dual(init)
    if probe != "svm" or len(Cs) == 1:
        return dual.to_primal(_fit_primal(probe, rows, Cs, y_np, K, dev, config, ctx, start, log))
    fits: dict[int, LinearFit] = {}
    prev = None
    for i in np.argsort(Cs, kind="stable"):
        warm = start.select(i) if start is not None and start.coef.shape[0] == len(Cs) else (prev or start)
        prev = fits[i] = _fit_primal(probe, rows, Cs[i:i + 1], y_np, K, dev, config, ctx, warm, log)
    parts = [fits[i] for i in range(len(Cs))]
    grid = LinearFit(probe, Cs, torch.cat([f.coef for f in parts]), torch.cat([f.intercept for f in parts]),
                     np.concatenate([f.converged for f in parts]), sum(f.newton_steps for f in parts),
                     sum(f.passes for f in parts), 0.0, str(dev), "torch")
    return dual.to_primal(grid)


def _fit_primal(probe: str, source, Cs: np.ndarray, y_np: np.ndarray, K: int, dev: torch.device,
                config: SolverConfig, ctx, init: LinearFit | None, log) -> LinearFit:
    """:func:`setup` and :func:`newton` on ``source``'s rows as they are (the primal form)."""
    d, P = source.dim, len(Cs)
    y = torch.from_numpy(y_np).to(dev)
    pb = setup(probe, source, Cs, y, K, dev, config, ctx)
    W, Z = _initial(pb.op, probe, init, P, K)
    passes = (0 if Z is None else 1) + (pb.sub.passes if pb.sub is not None else 0)
    res = newton(pb, W, Z, config, warm=init is not None, passes=passes, log=log)
    conv = res.converged.reshape(P, -1).all(1).cpu().numpy()
    W = res.W
    return LinearFit(probe, Cs, W[:d].permute(1, 0, 2).contiguous().cpu(), W[d].contiguous().cpu(), conv,
                     res.steps, res.passes, 0.0, str(dev), "torch")
