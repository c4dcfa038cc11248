"""The probes a protocol runs, behind one interface: ``fit`` rows at a C grid, ``accuracy`` on rows.

A protocol never asks which probe it holds. It asks whether the probe has a C to choose
(:attr:`has_C`); the linear probes do, the kNN probe does not (its k and T are fixed).

- :class:`LinearProbe`: ``svm`` or ``logreg`` through :func:`fit` on either backend; a fit
  holds every C of the grid, and a later fit warm-starts from an earlier one (torch backend).
- :class:`KnnProbe`: fitting keeps the rows; scoring votes among them (:mod:`.knn`).

>>> import numpy as np
>>> from dcgan_features.probes.rows import ArrayRows
>>> rows = ArrayRows(np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]], np.float32), np.array([0, 1, 0, 1]))
>>> probe = get_probe("knn", "torch", n_classes=2, device="cpu")
>>> probe.has_C, probe.accuracy(probe.fit(rows, None), rows).tolist()
(False, [1.0])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..core.devices import resolve_device
from ..core.errors import UserError
from .config import BACKENDS, PROBE_NAMES
from .knn import knn_predict
from .linear import LinearFit, check_fit
from .newton import fit_torch
from .sklearn_backend import fit_sklearn


def fit(probe: str, source, Cs: Sequence[float], backend: str = "torch", n_classes: int | None = None,
        device: str | torch.device = "auto", **kwargs) -> LinearFit:
    """Fit with either backend; ``kwargs`` go to :func:`.newton.fit_torch` or :func:`.sklearn_backend.fit_sklearn`."""
    if backend == "torch":  # the float32 solver's result is judged: finite, and moved from a cold start
        return check_fit(fit_torch(probe, source, Cs, n_classes, device, **kwargs), kwargs.get("init"))
    if backend == "sklearn":
        return fit_sklearn(probe, source, Cs, n_classes, **kwargs)
    raise UserError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")


class LinearProbe:
    """An L2-SVM or logistic probe: one fit per C grid, scored per C."""

    has_C = True

    def __init__(self, name: str, backend: str, n_classes: int, device: torch.device):
        self.name, self.backend, self.n_classes, self.device = name, backend, n_classes, device
        self.forms: set[str] = set()  # the solver forms (primal, dual) of the fits since take_forms()

    def fit(self, rows, Cs: Sequence[float], warm: LinearFit | None = None) -> LinearFit:
        """Every C of ``Cs`` on ``rows``; ``warm`` (a fit of the same probe) starts the torch solver."""
        kw = {"init": warm} if warm is not None and self.backend == "torch" else {}
        fitted = fit(self.name, rows, Cs, self.backend, self.n_classes, self.device, **kw)
        self.forms.add(fitted.form)
        return fitted

    def take_forms(self) -> str:
        """The forms of the fits made since the last call, e.g. ``"dual"`` or ``"dual+primal"``."""
        out, self.forms = "+".join(sorted(self.forms)), set()
        return out

    def accuracy(self, fitted: LinearFit, rows) -> np.ndarray:
        """(nC,) accuracy on ``rows`` under every C of the fit."""
        return fitted.accuracy(rows, self.device)


class KnnFit:
    """A "fitted" kNN probe: its labelled training rows, and nothing to select."""

    converged = np.ones(1, bool)

    def __init__(self, rows):
        self.rows = rows

    def select(self, i: int) -> "KnnFit":
        return self


class KnnProbe:
    """The weighted kNN probe of :mod:`.knn`, with its fixed k and temperature: no C."""

    name = "knn"
    has_C = False

    def __init__(self, n_classes: int, device: torch.device):
        self.n_classes, self.device = n_classes, device

    def fit(self, rows, Cs=None, warm=None) -> KnnFit:
        return KnnFit(rows)

    def take_forms(self) -> str:
        return ""

    def accuracy(self, fitted: KnnFit, rows) -> np.ndarray:
        """(1,) accuracy on ``rows`` of votes among the fitted rows."""
        pred = knn_predict(fitted.rows, rows, self.n_classes, device=self.device)
        return np.array([float((pred == np.asarray(rows.labels)).mean())])


def get_probe(name: str, backend: str, n_classes: int, device: str | torch.device):
    """The probe called ``name`` (one of :data:`PROBE_NAMES`)."""
    if name not in PROBE_NAMES:
        raise UserError(f"unknown probe {name!r}; choose from {', '.join(PROBE_NAMES)} or all")
    device = resolve_device(device)
    return KnnProbe(n_classes, device) if name == "knn" else LinearProbe(name, backend, n_classes, device)
