"""The reference backend: scikit-learn's ``LinearSVC`` and ``LogisticRegression``, one C at a time.

Same objectives and C convention as :mod:`dcgan_features.probes` (whose ``fit`` dispatches
here for ``backend="sklearn"``), fitted on a float32 matrix in RAM: what the torch solver is
tested and benchmarked against, and a fallback where torch's answer is in doubt.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from ..core.devices import mem_available
from ..core.errors import UserError
from .linear import LinearFit, check_Cs, check_probe, probe_labels
from .rows import resident


def fit_sklearn(probe: str, source, Cs: Sequence[float], n_classes: int | None = None, tol: float = 1e-4,
                max_iter: int | None = None, dual: bool | str = "auto", check_memory: bool = True) -> LinearFit:
    """The reference: ``LinearSVC(loss="squared_hinge")`` / ``LogisticRegression`` per C.

    ``check_memory=False`` lets it try even where it will not fit (the benchmark does so
    under an address-space limit, to record the failure).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    check_probe(probe)
    Cs = check_Cs(Cs)
    t0 = time.perf_counter()
    y, K = probe_labels(source, n_classes)
    # liblinear copies X to float64 and again into its sparse node format (16 B per value)
    need = source.n_rows * source.dim * (4 + 8 + (16 if probe == "svm" else 0))
    if check_memory and need > mem_available():
        raise UserError(f"scikit-learn would need ~{need / 2**30:.0f} GiB for a {source.n_rows} x {source.dim} "
                        f"{probe} fit, more than the {mem_available() / 2**30:.0f} GiB available; use --backend torch")
    # One float32 matrix in RAM, not copied when it is one already: scikit-learn's own copies
    # are what the benchmark measures.
    rows = resident(source, "cpu", max_bytes=source.n_rows * source.dim * 4)
    for _ in rows.chunks("cpu", whole=True):  # a first pass names the first non-finite value, if any
        pass
    X = rows.X.numpy()
    coefs, icepts, conv = [], [], []
    for C in Cs:
        if probe == "svm":
            model = LinearSVC(C=C, loss="squared_hinge", dual=dual, tol=tol, max_iter=max_iter or 1000)
        else:
            model = LogisticRegression(C=C, tol=tol, max_iter=max_iter or 100)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X, y)
        conv.append(not any(issubclass(w.category, ConvergenceWarning) for w in caught))
        coef = np.zeros((X.shape[1], K), np.float64)
        icpt = np.zeros(K, np.float64)
        cls = model.classes_
        if model.coef_.shape[0] == 1:  # binary: one model scores the second class
            coef[:, cls[1]] = model.coef_[0]
            icpt[cls[1]] = model.intercept_[0]
            if probe == "svm":
                coef[:, cls[0]], icpt[cls[0]] = -model.coef_[0], -model.intercept_[0]
        else:
            coef[:, cls] = model.coef_.T
            icpt[cls] = model.intercept_
        coefs.append(coef)
        icepts.append(icpt)
    # liblinear's dual="auto" solves in the dual when rows < features; lbfgs is primal
    form = "dual" if probe == "svm" and (dual is True or (dual == "auto" and X.shape[0] < X.shape[1])) else "primal"
    return LinearFit(probe, Cs, torch.from_numpy(np.stack(coefs)).float(), torch.from_numpy(np.stack(icepts)).float(),
                     np.array(conv), 0, 0, time.perf_counter() - t0, "cpu", "sklearn", form)
