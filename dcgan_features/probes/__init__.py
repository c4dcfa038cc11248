"""The probing stage: linear probes (and a kNN one) on frozen features, under the paper's protocols.

Objectives (scikit-learn's, so a C means the same in both backends):

- ``svm``: per class k, ``1/2 |w_k|^2 + C sum_i max(0, 1 - y_ik w_k.[x_i, 1])^2`` with
  ``y_ik = +-1``. The intercept is the weight of an appended constant-1 feature and IS
  regularised, exactly as liblinear / ``LinearSVC(intercept_scaling=1)``.
- ``logreg``: ``1/2 |W|^2 + C sum_i -log softmax(W x_i + b)_{y_i}``, intercept NOT
  regularised, as ``LogisticRegression`` (lbfgs). With two classes scikit-learn fits one
  binary model instead, whose C means twice as much; every protocol here has 10 classes.

Modules (imports point down this list, never up):

- :mod:`.protocols`   which rows fit, which choose C (validation, never test), which measure
- :mod:`.c_search`    choosing C on validation, widening the grid when C lands on its edge
- :mod:`.estimators`  the probe interface the protocols use; :func:`fit` picks the backend
- :mod:`.knn`         the weighted kNN probe
- :mod:`.newton`      the torch solver: Newton loop, CG, line search
- :mod:`.operator`, :mod:`.losses`, :mod:`.precond`   its passes over X, loss terms, preconditioner
- :mod:`.dual`        few-label fits (rows < features) on the rows' Gram matrix, the same objective
- :mod:`.sklearn_backend`   the scikit-learn reference
- :mod:`.linear`      :class:`LinearFit` and :func:`objective`
- :mod:`.rows`        row sources: in memory, from an HDF5 file, standardized
- :mod:`.config`      probe names, backends and the ``probe`` command's defaults (no torch)

>>> import numpy as np
>>> from dcgan_features.probes import fit, objective
>>> from dcgan_features.probes.rows import ArrayRows
>>> X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
>>> f = fit("logreg", ArrayRows(X, y), [1.0], device="cpu")
>>> objective("logreg", f.coef[0].numpy(), f.intercept[0].numpy(), X, y, 1.0) < objective(
...     "logreg", np.zeros((3, 2)), np.zeros(2), X, y, 1.0)
True
"""

import importlib

# The public names load their modules (and torch) on first use, so the torch-free
# :mod:`.config` and :mod:`dcgan_features.probes.records` stay cheap to import for the CLI.
_PUBLIC = {"fit": "estimators", "LinearFit": "linear", "objective": "linear", "PROBES": "linear",
           "SolverConfig": "newton", "fit_torch": "newton", "fit_sklearn": "sklearn_backend"}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
