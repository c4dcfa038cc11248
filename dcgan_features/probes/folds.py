"""The predefined-folds column (STL-10's official protocol): fit on each fold, score on all of test.

STL-10's ``fold_indices.txt`` names 10 folds of 1000 train images. For every fold a stratified
``val_fraction`` of its own rows (:func:`.splits.stratified_validation`, seeded by fold) is held
out; every C of the grid is fitted on the rest of the fold, and C is the best mean validation
accuracy over the folds (one C for all folds, widened at its edge like every grid). Each fold
is then refitted on all its rows at that C and scored on the whole test split; the column is
the mean and std over the folds. Only a fold's own labels ever reach its probe.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from ..core.errors import UserError
from .c_search import search_C
from .splits import rows_fingerprint, stratified_validation


def check_folds(folds: np.ndarray | None, y: np.ndarray, split: str) -> np.ndarray:
    """The folds as int64 (F, m) rows of ``split``, all labelled; refused, naming the problem, otherwise."""
    if folds is None:
        raise UserError("the feature file keeps no folds (/_dataset/folds); extract it again with this version")
    folds = np.asarray(folds, np.int64)
    if folds.ndim != 2 or folds.size == 0:
        raise UserError(f"the feature file's folds have shape {folds.shape}; expected (folds, rows per fold)")
    if folds.min() < 0 or folds.max() >= len(y):
        raise UserError(f"the folds name {split} row {int(folds.max())} but the {split!r} split has {len(y)} rows "
                        f"(extracted with --limit?); extract the whole split")
    if (y[folds] < 0).any():
        raise UserError(f"a fold names an unlabelled {split} row")
    return folds


def fold_column(probe, train, test, y: np.ndarray, folds: np.ndarray, cfg, seed: int, grid: np.ndarray,
                score: Callable[[float], float], say: Callable[[str], None]) -> dict:
    """Mean and std over the folds of test scores at one C chosen on the folds' held-out rows."""
    t0 = time.perf_counter()
    parts = [stratified_validation(y[rows], cfg.val_fraction or 0.1, len(rows), cfg.n_classes, seed + f,
                                   split=f"{cfg.train_split} fold {f + 1}") for f, rows in enumerate(folds)]
    conv, last = True, {}
    if probe.has_C:
        def evaluate(Cs: list[float]) -> np.ndarray:
            nonlocal conv
            val = np.zeros((len(folds), len(Cs)))
            for f, (rows, (v, p)) in enumerate(zip(folds, parts)):
                done = last_C(last, f)  # a widened grid starts from this fold's nearest fitted C
                warm = last[(f, min(done, key=lambda c: abs(math.log(c / Cs[0]))))] if done else None
                fit = probe.fit(train.subset(rows[p]), Cs, warm=warm)
                conv &= bool(fit.converged.all())
                val[f] = probe.accuracy(fit, train.subset(rows[v]))
                last.update({(f, c): fit.select(i) for i, c in enumerate(Cs)})
                say(f"fold {f + 1}/{len(folds)}" + (f" at C={Cs[0]:g}" if len(Cs) == 1 else ""))
            return val.mean(0)

        search = search_C(grid, evaluate, cfg.c_extend, say)  # C chosen on the folds' held-out rows only
        C, searched = search.C, search.record()
        val_scores = {f"{c:g}": score(a) for c, a in zip(search.grid, search.val_acc)}
    else:
        C, searched, val_scores = None, {"c_at_edge": None, "c_grid": None}, {}
    scores = []
    for f, rows in enumerate(folds):
        fit = probe.fit(train.subset(rows), [C] if C is not None else None, warm=last.get((f, C)))
        conv &= bool(np.all(getattr(fit, "converged", True)))
        scores.append(score(float(probe.accuracy(fit, test)[0])))
    scores = np.array(scores)
    std = float(scores.std(ddof=cfg.ci_ddof)) if len(scores) > 1 else 0.0
    return {"C": C, "n_labels": int(folds.shape[1]), "metric": cfg.metric, "mean": float(scores.mean()),
            "ci95": 1.96 * std, "n_runs": len(folds), "fit_seconds": time.perf_counter() - t0,
            "paper_value": cfg.paper_draws, "std": std, "val_scores": val_scores, "per_draw": scores.tolist(),
            "converged": conv, "val_rows": int(sum(len(v) for v, _ in parts)),
            "val_rows_sha256": rows_fingerprint(np.concatenate([rows[v] for rows, (v, _) in zip(folds, parts)])),
            **searched}


def last_C(last: dict, f: int) -> list[float]:
    """The Cs already fitted on fold ``f`` (warm starts for a widened grid)."""
    return [c for (g, c) in last if g == f]
