"""What a fitted linear probe is, and what every backend minimises.

:class:`LinearFit` holds the probes of one C grid (``coef`` (nC, d, K), ``intercept``
(nC, K)) and scores any row source; :func:`objective` is the primal objective both
backends minimise, in float64 (the tests judge every solution by it). The checks of
probe names, C values and labels live here because both backends share them.

>>> import numpy as np
>>> X = np.array([[1.0], [-1.0]]); y = np.array([1, 0])
>>> objective("svm", np.zeros((1, 2)), np.zeros(2), X, y, C=1.0)  # every margin violated by 1
4.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..core.devices import resolve_device
from ..core.errors import UserError
from .config import LINEAR_PROBES as PROBES


@dataclass
class LinearFit:
    """The fitted probes of one C grid: ``coef`` (nC, d, K), ``intercept`` (nC, K)."""

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
    form: str = "primal"  # the torch solver's: "primal" (on X) or "dual" (on the Gram matrix, :mod:`.dual`)

    @property
    def n_classes(self) -> int:
        return self.coef.shape[2]

    def select(self, i: int) -> "LinearFit":
        """The fit of the i-th C alone (e.g. to warm-start a refit)."""
        return LinearFit(self.probe, self.Cs[i:i + 1], self.coef[i:i + 1], self.intercept[i:i + 1],
                         self.converged[i:i + 1], self.newton_steps, self.passes, self.seconds, self.device,
                         self.backend, self.form)

    def scores(self, source, device: str | torch.device = "auto") -> torch.Tensor:
        """(N, nC, K) decision values of every probe of the grid, one pass over ``source``."""
        dev = resolve_device(device)
        P, d, K = self.coef.shape
        if source.dim != d:
            raise UserError(f"features have {source.dim} columns but the probe was fitted on {d}")
        Wf = self.coef.to(dev).permute(1, 0, 2).reshape(d, P * K)
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


# Where C means something in float32 (the torch solver's arithmetic): from about C = 1e17 the
# squared hinge loss of 1797 digits rows overflows float32 and the SVM returns NaN weights
# (chance accuracy; scikit-learn, in float64, still gets 98%); at 1e15 it is still right. 1e10
# leaves that margin for 30x more rows and larger features; below 1e-12 the weights are rounding.
MIN_C, MAX_C = 1e-12, 1e10


def check_Cs(Cs: Sequence[float]) -> np.ndarray:
    """The C grid as float64, each C positive, finite and in [MIN_C, MAX_C].

    >>> check_Cs([1e20])
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: C values must lie in [1e-12, 1e+10], where float32 arithmetic holds the probe's objective, got [1e+20]; e.g. --C 1e-3,1e-2,1e-1
    """
    Cs = np.asarray(list(Cs), dtype=np.float64)
    if Cs.size == 0 or not np.all(np.isfinite(Cs)) or np.any(Cs <= 0):
        raise UserError(f"C values must be positive and finite, got {Cs.tolist()}; e.g. --C 1e-3,1e-2,1e-1")
    if np.any(Cs < MIN_C) or np.any(Cs > MAX_C):
        raise UserError(f"C values must lie in [{MIN_C:g}, {MAX_C:g}], where float32 arithmetic holds the probe's "
                        f"objective, got {[float(f'{c:g}') for c in Cs]}; e.g. --C 1e-3,1e-2,1e-1")
    return Cs


def check_fit(fit: "LinearFit", start: "LinearFit | None") -> "LinearFit":
    """After a solver: a C whose weights are not finite is refused in one line; one whose weights
    never left a start of zeros (the solver gave up at its first step) is not converged.

    A warm start may legitimately be optimal already, so only a cold start is judged unmoved.

    >>> import torch
    >>> f = LinearFit("svm", np.array([1.0]), torch.zeros(1, 2, 3), torch.zeros(1, 3), np.ones(1, bool))
    >>> check_fit(f, None).converged.tolist()
    [False]
    """
    P = fit.coef.shape[0]
    finite = torch.isfinite(fit.coef.reshape(P, -1)).all(1) & torch.isfinite(fit.intercept.reshape(P, -1)).all(1)
    if not bool(finite.all()):
        bad = [float(c) for c, ok in zip(fit.Cs, finite.tolist()) if not ok]
        raise UserError(f"the {fit.probe} fit at C={', '.join(f'{c:g}' for c in bad)} gave non-finite weights: "
                        "the objective overflowed float32 there; use smaller C values (or --backend sklearn)")
    if start is None:
        unmoved = ((fit.coef.reshape(P, -1) == 0).all(1) & (fit.intercept.reshape(P, -1) == 0).all(1)).numpy()
        fit.converged = np.asarray(fit.converged, bool) & ~unmoved
    return fit


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


def objective(probe: str, coef: np.ndarray, intercept: np.ndarray, X: np.ndarray, y: np.ndarray,
              C: float) -> float:
    """The primal objective of one fitted probe, in float64: what both backends minimise.

    ``coef`` (d, K), ``intercept`` (K,); for svm the sum of the K one-vs-rest objectives.
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
