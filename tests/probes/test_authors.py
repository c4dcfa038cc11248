"""The svhn protocol against the SVHN authors' procedure.

Two oracles, neither computed by the package:

- the rows: ``reference/svhn_authors_draws.json`` (a copy of the project's
  ``shared/reference/svhn_authors_draws.json``; read its ``what``) holds what Newmu/dcgan_code's
  ``svhn/load.py`` and ``svhn/svhn_semisup_analysis.py`` did under a real Python 2.7.18 on a
  synthetic ``.mat`` label vector (validation rows, the first 11 selection draws, the first
  3 draws measured after all 70 selection draws). We write that vector as a ``.mat`` file,
  load it through our loader and run our split and draw stream on it, in both backends;
- the procedure around the draws, written out plainly in numpy/scikit-learn on tiny data:
  ``LinearSVC(C)`` on each draw, C by the lowest mean validation error (``np.argmin``: ties to
  the smallest C), the measured draws at that C reported as mean and 1.96 * std (``np.std``:
  ddof 0). It is fed the draws the protocol made (their identity is the first oracle's job).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from sklearn.svm import LinearSVC
from sklearn.utils import shuffle

from dcgan_features.probes import estimators
from dcgan_features.data.registry import load
from dcgan_features.probes.authors import Draws, validation_split
from dcgan_features.probes.protocols import PROTOCOLS, from_arrays, get_protocol, run_protocol

REFERENCE = Path(__file__).parent / "reference" / "svhn_authors_draws.json"
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


def authors_reference(Xtr, ytr, Xte, yte, drawn):
    """Their selection and measurement loop on the draws ``drawn`` (rows of Xtr, in order)."""
    np_rng = np.random.RandomState(42)
    trX, trY = shuffle(Xtr, ytr, random_state=np_rng)  # load.svhn_with_valid_set
    vaX, vaY = trX[:V], trY[:V]
    stream = iter(drawn)

    def draw():
        return next(stream)

    mean_va_errs = []
    for c in GRID:
        va_errs = []
        for _ in range(SELECT):
            s = draw()
            model = LinearSVC(C=c).fit(Xtr[s], ytr[s])
            va_errs.append(100 * (1 - np.mean(model.predict(vaX) == vaY)))
        mean_va_errs.append(np.mean(va_errs))
    best_c = GRID[int(np.argmin(mean_va_errs))]
    te_errs = []
    for _ in range(DRAWS):
        s = draw()
        model = LinearSVC(C=best_c).fit(Xtr[s], ytr[s])
        te_errs.append(100 * (1 - np.mean(model.predict(Xte) == yte)))
    return best_c, mean_va_errs, np.mean(te_errs), np.std(te_errs) * 1.96


@pytest.mark.parametrize("seed", [0, 1])
def test_svhn_protocol_is_the_authors_procedure(seed, monkeypatch):
    Xtr, ytr, Xte, yte = tiny_svhn(seed)
    seen, real_fit = [], estimators.fit
    monkeypatch.setattr(estimators, "fit", lambda p, src, Cs, *a, **kw: seen.append(np.asarray(src.rows)) or
                        real_fit(p, src, Cs, *a, **kw))
    cfg = get_protocol("svhn", val_size=V, labels_per_class=K_PER_CLASS, select_draws=SELECT, draws=DRAWS)
    (r,) = run_protocol("svhn", from_arrays(Xtr, ytr, Xte, yte), ("svm",), cfg, Cs=GRID, device="cpu",
                        backend="sklearn")
    assert len(seen) == len(GRID) * SELECT + DRAWS
    assert all(np.bincount(ytr[s], minlength=10).tolist() == [K_PER_CLASS] * 10 for s in seen)
    best_c, mean_va_errs, mean, ci = authors_reference(Xtr, ytr, Xte, yte, seen)
    assert r["C"] == best_c and r["seed"] == 42
    assert [r["val_scores"][f"{c:g}"] for c in GRID] == pytest.approx(mean_va_errs)
    assert r["mean"] == pytest.approx(mean) and r["ci95"] == pytest.approx(ci)
    assert (r["validation"], r["selection"], r["ci_ddof"], r["c_grid"], r["c_at_edge"]) == (
        "uniform", "fresh", 0, GRID, best_c in (GRID[0], GRID[-1]))


@pytest.fixture(scope="module")
def authors_rows(tmp_path_factory):
    """The reference's labels as a train_32x32.mat (pixels blank), read back by our loader."""
    ref = json.loads(REFERENCE.read_text())
    root = tmp_path_factory.mktemp("svhn_ref")
    y = np.asarray(ref["mat_y"], np.uint8)[:, None]  # the .mat's y: 1..10, 10 meaning digit 0
    scipy.io.savemat(root / "train_32x32.mat", {"X": np.zeros((32, 32, 3, len(y)), np.uint8), "y": y},
                     do_compression=True)
    labels = load("svhn", "train", data_dir=root).labels.numpy()
    return ref, labels


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_svhn_rows_are_the_authors_own_under_python_2(authors_rows, backend, monkeypatch):
    """Validation rows, first 11 selection draws and first 3 measured draws equal their loop's."""
    ref, y = authors_rows
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(y), 2)).astype(np.float32)  # the features do not choose rows
    fitted, scored, real_fit = [], [], estimators.fit
    monkeypatch.setattr(estimators, "fit", lambda p, src, Cs, *a, **kw: fitted.append(np.asarray(src.rows)) or
                        real_fit(p, src, Cs, *a, **kw))
    real_acc = estimators.LinearProbe.accuracy
    monkeypatch.setattr(estimators.LinearProbe, "accuracy", lambda self, f, rows: scored.append(rows) or
                        real_acc(self, f, rows))
    cfg = get_protocol("svhn", draws=3)  # their sizes: 10000 validation rows, 100 per class, 7 C x 10 draws
    run_protocol("svhn", from_arrays(X, y, X[:50], y[:50]), ("svm",), cfg, device="cpu", backend=backend)
    n_select = ref["selection_draw_count"]
    assert len(fitted) == n_select + 3
    val = [r.row_ids if r.rows is None else r.rows for r in scored if r.split == "train"]  # resident or a subset
    assert val and all(np.array_equal(v, ref["validation_rows"]) for v in val)  # in their shuffled order
    for ours, theirs in zip(fitted, ref["selection_draws_first_11"]):
        assert np.array_equal(ours, np.sort(theirs))  # we fit a draw's rows sorted
    for ours, theirs in zip(fitted[n_select:], ref["final_draws_first_3"]):
        assert np.array_equal(ours, np.sort(theirs))


def test_the_draw_stream_gives_their_rows_in_their_order(authors_rows):
    ref, y = authors_rows
    val, pool = validation_split(len(y), 10000)
    assert np.array_equal(val, ref["validation_rows"])
    draws = Draws(y, pool, 100, 10, class_order=PROTOCOLS["svhn"].class_order)
    got = [draws.next() for _ in range(ref["selection_draw_count"] + 3)]
    assert [g.tolist() for g in got[:11]] == ref["selection_draws_first_11"]
    assert [g.tolist() for g in got[-3:]] == ref["final_draws_first_3"]


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
