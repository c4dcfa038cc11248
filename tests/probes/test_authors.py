"""The svhn protocol against the SVHN authors' procedure, written out plainly in numpy/scikit-learn.

The reference below follows Newmu/dcgan_code's ``svhn/load.py`` and
``svhn/svhn_semisup_analysis.py`` step by step on tiny data: ``sklearn.utils.shuffle`` with
``RandomState(42)``, the first ``V`` shuffled rows for validation, for every C in turn 10
(here 3) draws of ``py_rng.sample(class positions, k)`` class by class fitted with
``LinearSVC(C)``, C by the lowest mean validation error (``np.argmin``: ties to the smallest
C), then more draws from the same stream at that C, reported as mean and 1.96 * std
(``np.std``: ddof 0). Only Python 2's ``random.sample`` is taken from the package
(:func:`py2_sample`, pinned by its doctest), as the script ran on Python 2.
"""

import random

import numpy as np
import pytest
from sklearn.svm import LinearSVC
from sklearn.utils import shuffle

from dcgan_features.probes import estimators
from dcgan_features.probes.authors import Draws, py2_sample, validation_split
from dcgan_features.probes.protocols import PROTOCOLS, from_arrays, get_protocol, run_protocol

GRID = [1e-3, 1e-2, 1e-1, 1.0]
V, K_PER_CLASS, SELECT, DRAWS = 100, 3, 3, 6


def tiny_svhn(seed=0, n_train=400, n_test=200, dim=8):
    """Ten overlapping Gaussian classes of unequal sizes (SVHN is imbalanced too)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.2, (10, dim))
    p = np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum()
    ytr, yte = rng.choice(10, n_train, p=p), rng.choice(10, n_test, p=p)
    Xtr = (centers[ytr] + rng.normal(0, 1, (n_train, dim))).astype(np.float32)
    Xte = (centers[yte] + rng.normal(0, 1, (n_test, dim))).astype(np.float32)
    return Xtr, ytr, Xte, yte


def authors_reference(Xtr, ytr, Xte, yte):
    np_rng, py_rng = np.random.RandomState(42), random.Random(42)
    rows = np.arange(len(ytr))
    trX, trY, rows = shuffle(Xtr, ytr, rows, random_state=np_rng)  # load.svhn_with_valid_set
    vaX, vaY, trX, trY, rows = trX[:V], trY[:V], trX[V:], trY[V:], rows[V:]
    drawn = []

    def draw():
        idxs = np.arange(len(trX))
        classes_idxs = [idxs[trY == y] for y in range(10)]
        sampled = np.asarray([py2_sample(py_rng, list(c), K_PER_CLASS) for c in classes_idxs]).flatten()
        drawn.append(np.sort(rows[sampled]))
        return sampled

    mean_va_errs = []
    for c in GRID:
        va_errs = []
        for _ in range(SELECT):
            s = draw()
            model = LinearSVC(C=c).fit(trX[s], trY[s])
            va_errs.append(100 * (1 - np.mean(model.predict(vaX) == vaY)))
        mean_va_errs.append(np.mean(va_errs))
    best_c = GRID[int(np.argmin(mean_va_errs))]
    te_errs = []
    for _ in range(DRAWS):
        s = draw()
        model = LinearSVC(C=best_c).fit(trX[s], trY[s])
        te_errs.append(100 * (1 - np.mean(model.predict(Xte) == yte)))
    return best_c, mean_va_errs, drawn, np.mean(te_errs), np.std(te_errs) * 1.96, rows


@pytest.mark.parametrize("seed", [0, 1])
def test_svhn_protocol_is_the_authors_procedure(seed, monkeypatch):
    Xtr, ytr, Xte, yte = tiny_svhn(seed)
    best_c, mean_va_errs, drawn, mean, ci, pool = authors_reference(Xtr, ytr, Xte, yte)
    seen, real_fit = [], estimators.fit
    monkeypatch.setattr(estimators, "fit", lambda p, src, Cs, *a, **kw: seen.append(np.asarray(src.rows)) or
                        real_fit(p, src, Cs, *a, **kw))
    cfg = get_protocol("svhn", val_size=V, labels_per_class=K_PER_CLASS, select_draws=SELECT, draws=DRAWS)
    (r,) = run_protocol("svhn", from_arrays(Xtr, ytr, Xte, yte), ("svm",), cfg, Cs=GRID, device="cpu",
                        backend="sklearn")
    assert len(seen) == len(drawn) == len(GRID) * SELECT + DRAWS
    assert all(np.array_equal(a, b) for a, b in zip(seen, drawn))  # the same draws, in the same order
    assert r["C"] == best_c and r["seed"] == 42
    assert [r["val_scores"][f"{c:g}"] for c in GRID] == pytest.approx(mean_va_errs)
    assert r["mean"] == pytest.approx(mean) and r["ci95"] == pytest.approx(ci)
    assert (r["validation"], r["selection"], r["ci_ddof"], r["c_grid"], r["c_at_edge"]) == (
        "uniform", "fresh", 0, GRID, best_c in (GRID[0], GRID[-1]))


def test_validation_is_the_authors_shuffle_and_draws_continue_one_stream():
    y = np.repeat(np.arange(10), 30)
    val, pool = validation_split(len(y), 50, seed=42)
    order = shuffle(np.arange(len(y)), random_state=np.random.RandomState(42))
    assert np.array_equal(val, order[:50]) and np.array_equal(pool, order[50:])
    d1, d2 = Draws(y, pool, 2, 10), Draws(y, pool, 2, 10)
    first = [d1.next() for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, [d2.next() for _ in range(3)]))  # seeded
    assert not np.array_equal(first[0], first[1])  # a fresh draw each time
    assert all(np.bincount(y[f], minlength=10).tolist() == [2] * 10 and not np.isin(f, val).any() for f in first)


def test_our_departures_are_named_options_recorded_in_every_result():
    Xtr, ytr, Xte, yte = tiny_svhn(0)
    assert (PROTOCOLS["svhn"].validation, PROTOCOLS["svhn"].selection, PROTOCOLS["svhn"].ci_ddof) == (
        "uniform", "fresh", 0)
    ours = get_protocol("svhn", val_size=V, labels_per_class=K_PER_CLASS, select_draws=SELECT, draws=DRAWS,
                        validation="per-class", selection="shared", ci_ddof=1)
    (r,) = run_protocol("svhn", from_arrays(Xtr, ytr, Xte, yte), ("svm",), ours, Cs=GRID, seed=0, device="cpu")
    assert (r["validation"], r["selection"], r["ci_ddof"], r["seed"]) == ("per-class", "shared", 1, 0)
    assert r["ci95"] == pytest.approx(1.96 * np.std(r["per_draw"], ddof=1))
    with pytest.raises(Exception, match="validation must be one of per-class, uniform"):
        get_protocol("svhn", validation="random")
