"""Evaluation protocols: which rows train a probe, which choose C, which measure it.

C is always chosen on validation rows held out of the training split, never on test:
:func:`full_column` and :func:`few_labels_column` are the two columns, each a short read,
over any probe of :mod:`.estimators`. Each column is optional per protocol:

- ``all``: C by validation accuracy of probes fitted on the training rows minus the
  validation rows; then refit at that C on every labelled training row (warm-started from
  the selection fit) and measure on test. ``ci95`` is the binomial 1.96 * sqrt(p(1-p)/n_test).
- ``<n>-per-class``: ``labels_per_class`` labelled rows per class drawn (seeded, class
  balanced) from the non-validation rows. With ``select_draws == 0`` every draw is fitted
  on the whole grid, C is the best mean validation accuracy over the draws and the test
  numbers of those same draws at that C are reported; with ``select_draws > 0`` C is chosen
  on that many draws and ``draws`` fresh draws are measured. ``mean +- ci95`` is mean +- 1.96
  std over draws (``ci_ddof``), as the SVHN paper reports it.

``svhn`` is the SVHN authors' procedure exactly (:mod:`.authors`): ``validation="uniform"``
(10000 train rows drawn uniformly, their shuffle), ``selection="fresh"`` (10 new draws for
every C of the grid, from the one stream that then gives the 100 measured draws; lowest mean
validation error, ties to the smaller C), ``ci_ddof=0`` and seed 42. The others use ours,
each a named option: a class-balanced validation split, the same draws for every C, ddof 1.

When the chosen C is the first or last value of its grid, the grid grows by a decade in that
direction and C is chosen again, at most ``c_extend`` times (:mod:`.c_search`; 2, except svhn:
0, as the authors searched their grid only); every record carries the grid actually searched
(``c_grid``) and whether C is still at its edge (``c_at_edge``).

Sizes (:data:`PROTOCOLS`, overridable field by field with :func:`get_protocol`):

============== ======== ============== ================ ===== =========================
protocol       val rows labels / class draws (select)   grid  paper
============== ======== ============== ================ ===== =========================
cifar10        10000    400            10               wide  82.8 acc (all), 73.8 +- 0.4
svhn           10000    100 (no "all") 100 (10)         1e-4..1e-2  22.48 error
fashion-mnist  10000    100            10               wide  -
digits         300      20             10               wide  -
============== ======== ============== ================ ===== =========================

``digits`` is scikit-learn's 1797 images, split 1297 train / 500 test by data.py; 300
validation rows (30 per class) leave >= 90 per class to draw 20 from.

>>> cfg = get_protocol("digits", val_size=20, labels_per_class=2)
>>> val, pool = split_validation(np.repeat(np.arange(10), 5), cfg.val_size, 10, seed=0)
>>> len(val), len(pool), np.bincount(np.repeat(np.arange(10), 5)[val]).tolist()
(20, 30, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.devices import resolve_device
from ..core.errors import UserError
from . import authors
from .c_search import CSearch, search_C
from .config import ProbeConfig
from .estimators import get_probe
from .linear import check_Cs
from .rows import ArrayRows, Standardized, open_split, standardizer

WIDE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
VALIDATIONS = ("per-class", "uniform")
SELECTIONS = ("shared", "fresh")
SVHN_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)  # the authors' grid


@dataclass(frozen=True)
class ProtocolConfig:
    """The numbers of one protocol; the defaults of :data:`PROTOCOLS` are the paper's."""

    name: str
    val_size: int
    full: bool = True
    labels_per_class: int | None = None
    draws: int = 10
    select_draws: int = 0
    c_grid: tuple[float, ...] = WIDE_GRID
    c_extend: int = 2  # decades the grid may grow by when C lands on its edge
    validation: str = "per-class"  # or "uniform": val_size rows drawn uniformly (the SVHN authors')
    selection: str = "shared"  # or "fresh": select_draws new draws for every C (the SVHN authors')
    ci_ddof: int = 1  # the interval is 1.96 x std(ddof) over draws; the SVHN authors' is ddof 0
    seed: int = 0  # the default seed of the validation split and the draws (svhn: the authors' 42)
    metric: str = "accuracy"  # or "error" (= 100 - accuracy), both in percent
    n_classes: int = 10
    paper_full: float | None = None
    paper_draws: float | None = None
    train_split: str = "train"
    test_split: str = "test"


PROTOCOLS = {
    "cifar10": ProtocolConfig("cifar10", val_size=10000, labels_per_class=400, draws=10,
                              paper_full=82.8, paper_draws=73.8),
    "svhn": ProtocolConfig("svhn", val_size=10000, full=False, labels_per_class=100, draws=100,
                           select_draws=10, c_grid=SVHN_GRID, c_extend=0, metric="error", paper_draws=22.48,
                           validation="uniform", selection="fresh", ci_ddof=0, seed=authors.AUTHORS_SEED),
    "fashion-mnist": ProtocolConfig("fashion-mnist", val_size=10000, labels_per_class=100, draws=10),
    "digits": ProtocolConfig("digits", val_size=300, labels_per_class=20, draws=10),
}


def get_protocol(name: str, **overrides) -> ProtocolConfig:
    """The named protocol with some fields replaced (``None`` values are ignored)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    cfg = dataclasses.replace(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})
    if cfg.val_size < cfg.n_classes:
        raise UserError(f"--val-size must be at least one row per class ({cfg.n_classes}), got {cfg.val_size}")
    if cfg.labels_per_class is not None and cfg.labels_per_class < 1:
        raise UserError(f"--labels-per-class must be >= 1, got {cfg.labels_per_class}")
    if cfg.draws < 1:
        raise UserError(f"--draws must be >= 1, got {cfg.draws}")
    if cfg.c_extend < 0:
        raise UserError(f"--extend-C must be >= 0, got {cfg.c_extend}")
    for field, choices in (("validation", VALIDATIONS), ("selection", SELECTIONS), ("ci_ddof", (0, 1))):
        if getattr(cfg, field) not in choices:
            raise UserError(f"{field} must be one of {', '.join(map(str, choices))}, got {getattr(cfg, field)!r}")
    if cfg.selection == "fresh" and not cfg.select_draws:
        raise UserError("fresh selection draws need select_draws > 0 (the draws per C)")
    return cfg


# ------------------------------------------------------------------------- splits


def _by_class(labels: np.ndarray, rows: np.ndarray, n_classes: int) -> list[np.ndarray]:
    return [rows[labels[rows] == c] for c in range(n_classes)]


def split_validation(labels: np.ndarray, val_size: int, n_classes: int, seed: int,
                     split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced seeded validation rows and the remaining labelled rows (both sorted).

    ``val_size // n_classes`` rows per class (the remainder to the first classes);
    unlabelled rows (-1) are in neither.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0])
    per = [val_size // n_classes + (c < val_size % n_classes) for c in range(n_classes)]
    val = []
    for c, rows in enumerate(_by_class(labels, np.arange(len(labels)), n_classes)):
        if len(rows) <= per[c]:
            raise UserError(f"split {split!r} has {len(rows)} rows of class {c} but the protocol holds out "
                            f"{per[c]} of each for validation; lower --val-size")
        val.append(rng.choice(rows, per[c], replace=False))
    val = np.sort(np.concatenate(val))
    labelled = np.flatnonzero(labels >= 0)
    return val, np.setdiff1d(labelled, val)


def draw_labels(labels: np.ndarray, pool: np.ndarray, per_class: int, n_classes: int, seed: int, draw: int,
                stream: int = 1, split: str = "train") -> np.ndarray:
    """``per_class`` rows of every class from ``pool``, seeded by (seed, stream, draw); sorted."""
    rng = np.random.default_rng([seed, stream, draw])
    out = []
    for c, rows in enumerate(_by_class(np.asarray(labels), pool, n_classes)):
        if len(rows) < per_class:
            raise UserError(f"split {split!r} has {len(rows)} labelled rows of class {c} outside validation, "
                            f"fewer than the {per_class} per class the protocol draws; lower --labels-per-class")
        out.append(rng.choice(rows, per_class, replace=False))
    return np.sort(np.concatenate(out))


# ------------------------------------------------------------------------ sources


@dataclass
class Features:
    """What a protocol runs on: train and test row sources plus a description for the records."""

    train: object
    test: object
    describe: dict


def from_arrays(X_train, y_train, X_test, y_test, name: str = "arrays", **describe) -> Features:
    """In-memory features (numpy or torch, any float dtype) as a protocol input."""
    tr = ArrayRows(X_train, y_train, split="train")
    te = ArrayRows(X_test, y_test, split="test")
    if tr.dim != te.dim:
        raise UserError(f"train features have {tr.dim} columns but test features {te.dim}")
    return Features(tr, te, {"features": name, "dim": tr.dim, **describe})


def from_file(ff, cfg: ProtocolConfig, device="cpu", cache: bool | str = "auto") -> Features:
    """The protocol's train and test splits of an open ``store.FeatureFile``."""
    meta = ff.meta
    layers = meta.get("layers") or []
    sha = str(meta.get("checkpoint_sha256", "") or "")
    describe = {"dataset": meta.get("dataset", cfg.name), "trained_on": str(meta.get("trained_on", "") or ""),
                "features": getattr(ff, "path", None),
                "architecture": meta.get("architecture", ""), "checkpoint": sha[:12],
                "layers": "+".join(layers) if isinstance(layers, (list, tuple)) else str(layers), "dim": ff.dim}
    if describe["features"] is not None:
        describe["features"] = Path(str(describe["features"])).name
    describe.update(bn_mode=meta.get("bn_mode"), feature_dtype=ff.dtype,
                    extraction_departures=_extraction_departures(cfg.name, meta.get("bn_mode"), ff.dtype))
    for split in (cfg.train_split, cfg.test_split):
        if split not in ff.splits:
            raise UserError(f"feature file has no {split!r} split (has: {', '.join(ff.splits) or 'none'}); "
                            f"the {cfg.name} protocol needs {cfg.train_split!r} and {cfg.test_split!r}")
    return Features(open_split(ff, cfg.train_split, device, cache), open_split(ff, cfg.test_split, device, cache),
                    describe)


def _extraction_departures(protocol: str, bn_mode: str | None, dtype: str) -> str:
    """Where a feature file's extraction differs from the paper protocol's (``extract.PAPER_EXTRACTION``):
    e.g. ``"bn recompute (paper: authors); float16 (paper: float32)"``, empty when it does not."""
    from ..extract.run import PAPER_EXTRACTION

    paper = PAPER_EXTRACTION.get(protocol, {})
    out = []
    if "bn" in paper and bn_mode != paper["bn"]:
        out.append(f"bn {bn_mode} (paper: {paper['bn']})")
    if "dtype" in paper and dtype != paper["dtype"]:
        out.append(f"{dtype} (paper: {paper['dtype']})")
    return "; ".join(out)


# ------------------------------------------------------------------------ running


def _score(acc: float, metric: str) -> float:
    return 100.0 * acc if metric == "accuracy" else 100.0 * (1.0 - acc)


def _val_scores(search: CSearch, metric: str) -> dict:
    return {f"{c:g}": _score(a, metric) for c, a in zip(search.grid, search.val_acc)}


@dataclass
class Split:
    """The rows of one protocol run: training-split row sets by role, and the test rows.

    ``val`` chooses C; ``pool`` (labelled training rows minus ``val``) is what selection fits
    and label draws see; ``labelled`` (every labelled training row) refits the full column.
    The test rows only ever measure a probe whose C is already fixed.
    """

    cfg: ProtocolConfig
    seed: int
    train: object
    test: object
    y: np.ndarray
    val_idx: np.ndarray
    pool_idx: np.ndarray
    labelled_idx: np.ndarray

    def draw(self, d: int, stream: int = 1):
        """The d-th seeded class-balanced draw of ``labels_per_class`` rows from the pool."""
        cfg = self.cfg
        return self.train.subset(draw_labels(self.y, self.pool_idx, cfg.labels_per_class, cfg.n_classes, self.seed,
                                             d, stream=stream, split=cfg.train_split))


def _held(rows, probe):
    """The validation rows gathered once into one matrix on the probe's device when they fit in a
    quarter of its free memory: every fit of a column scores them, and a subset would gather
    them again each time (10000 x 7168 floats per fit in the SVHN authors' 170)."""
    from ..core.devices import free_memory
    from .rows import resident

    return resident(rows, probe.device, free_memory(probe.device) // 4)


def full_column(probe, split: Split, grid: np.ndarray, say: Callable[[str], None] = lambda m: None) -> dict:
    """The ``all`` column: C by validation accuracy, then one refit on every labelled row, measured on test."""
    t0 = time.perf_counter()
    train, metric = split.train, split.cfg.metric
    C, val_scores, conv, searched = None, {}, True, {"c_at_edge": None, "c_grid": None}
    if probe.has_C:
        pool, val_rows = train.subset(split.pool_idx), _held(train.subset(split.val_idx), probe)  # held out
        fits: dict[float, object] = {}  # C -> its one-C selection fit, the refit's warm start

        def evaluate(Cs: list[float]) -> np.ndarray:
            nonlocal conv
            edge = fits[min(fits, key=lambda c: abs(math.log(c / Cs[0])))] if fits else None
            sel = probe.fit(pool, Cs, warm=edge)
            conv &= bool(sel.converged.all())
            fits.update({c: sel.select(i) for i, c in enumerate(Cs)})
            return probe.accuracy(sel, val_rows)

        search = search_C(grid, evaluate, split.cfg.c_extend, say)  # C is chosen here, on validation rows only
        C = search.C
        final = probe.fit(train.subset(split.labelled_idx), [C], warm=fits[C])
        val_scores, searched = _val_scores(search, metric), search.record()
        conv &= bool(final.converged.all())
    else:
        final = probe.fit(train.subset(split.labelled_idx), None)
    acc = float(probe.accuracy(final, split.test)[0])  # test rows: measured once, C fixed
    n_test = len(split.test.labels)
    return {"C": C, "n_labels": len(split.labelled_idx), "metric": metric, "mean": _score(acc, metric),
            "ci95": 100 * 1.96 * math.sqrt(acc * (1 - acc) / n_test), "n_runs": 1,
            "fit_seconds": time.perf_counter() - t0, "paper_value": split.cfg.paper_full, "std": 0.0,
            "val_scores": val_scores, "converged": conv, **searched}


def few_labels_column(probe, split: Split, grid: np.ndarray, say: Callable[[str], None]) -> dict:
    """The ``<n>-per-class`` column: C by mean validation accuracy over draws, test accuracy over draws.

    Without ``select_draws`` the draws that chose C are measured at it; with it (the SVHN
    authors' protocol) ``select_draws`` draws choose C and ``draws`` fresh ones (another seed
    stream) are fitted at that C and measured. A probe without C is measured on ``draws`` draws.
    """
    t0 = time.perf_counter()
    cfg = split.cfg
    C, val_scores, conv, searched = None, {}, True, {"c_at_edge": None, "c_grid": None}
    if not probe.has_C:
        test_acc = np.array([probe.accuracy(probe.fit(split.draw(d), None), split.test)[0]
                             for d in range(cfg.draws)])
    elif cfg.selection == "fresh":
        C, val_scores, searched, test_acc, conv = _fresh_draws(probe, split, grid, say)
    else:
        sel_draws = cfg.select_draws or cfg.draws
        val_src = _held(split.train.subset(split.val_idx), probe)
        draws = [split.draw(d) for d in range(sel_draws)]
        last: dict[float, object] = {}  # C -> the last selection draw's one-C fit
        test_by_C: dict[float, np.ndarray] = {}  # without select_draws: each draw's test accuracy per C

        def evaluate(Cs: list[float]) -> np.ndarray:
            nonlocal conv
            val_acc, test_acc = np.zeros((sel_draws, len(Cs))), np.zeros((sel_draws, len(Cs)))
            # warm starts: each draw's grid starts from the previous draw's solutions (same
            # C, same distribution of rows): fewer Newton steps, same optimum
            f = last[min(last, key=lambda c: abs(math.log(c / Cs[0])))] if last else None  # widening: the edge's
            for d, rows in enumerate(draws):
                f = probe.fit(rows, Cs, warm=f)
                val_acc[d] = probe.accuracy(f, val_src)
                conv &= bool(f.converged.all())
                if not cfg.select_draws:
                    test_acc[d] = probe.accuracy(f, split.test)
                say(f"selection draw {d + 1}/{sel_draws}" + (f" at C={Cs[0]:g}" if len(Cs) == 1 else ""))
            last.update({c: f.select(i) for i, c in enumerate(Cs)})
            test_by_C.update({c: test_acc[:, i] for i, c in enumerate(Cs)})
            return val_acc.mean(0)

        search = search_C(grid, evaluate, cfg.c_extend, say)  # C is chosen here, on validation rows only
        C, val_scores, searched = search.C, _val_scores(search, cfg.metric), search.record()
        if cfg.select_draws:  # fresh draws (another seed stream) at the chosen C only
            f, test_acc = last[C], np.zeros(cfg.draws)
            for d in range(cfg.draws):
                f = probe.fit(split.draw(d, stream=2), [C], warm=f)
                test_acc[d] = float(probe.accuracy(f, split.test)[0])
                conv &= bool(f.converged.all())
        else:
            test_acc = test_by_C[C]
    scores = np.array([_score(a, cfg.metric) for a in test_acc])
    mean, std = float(scores.mean()), float(scores.std(ddof=cfg.ci_ddof)) if len(scores) > 1 else 0.0
    return {"C": C, "n_labels": cfg.labels_per_class * cfg.n_classes, "metric": cfg.metric, "mean": mean,
            "ci95": 1.96 * std, "n_runs": cfg.draws, "fit_seconds": time.perf_counter() - t0,
            "paper_value": cfg.paper_draws, "std": std, "val_scores": val_scores, "per_draw": scores.tolist(),
            "converged": conv, **searched}


def _fresh_draws(probe, split: Split, grid: np.ndarray, say: Callable[[str], None]) -> tuple:
    """The SVHN authors' selection: ``select_draws`` fresh draws for every C in turn, from one
    stream (:class:`.authors.Draws`) that then gives the ``draws`` measured at the chosen C."""
    cfg, conv = split.cfg, True
    draws = authors.Draws(split.y, split.pool_idx, cfg.labels_per_class, cfg.n_classes, split.seed, cfg.train_split)
    val_src = _held(split.train.subset(split.val_idx), probe)
    last: dict[float, object] = {}

    def fit_next(C: float, warm):
        nonlocal conv
        f = probe.fit(split.train.subset(np.sort(draws.next())), [C], warm=warm)
        conv &= bool(f.converged.all())
        return f

    def evaluate(Cs: list[float]) -> np.ndarray:
        means = []
        for C in Cs:
            f, acc = None, []
            for d in range(cfg.select_draws):
                f = fit_next(C, f)
                acc.append(float(probe.accuracy(f, val_src)[0]))
            say(f"C={C:g}: mean validation {cfg.metric} {_score(float(np.mean(acc)), cfg.metric):.2f}% "
                f"over {cfg.select_draws} fresh draws")
            last[C] = f
            means.append(float(np.mean(acc)))
        return np.array(means)

    search = search_C(grid, evaluate, cfg.c_extend, say)  # C is chosen here, on validation rows only
    f, test_acc = last[search.C], np.zeros(cfg.draws)
    for d in range(cfg.draws):  # the same stream goes on: the draws measured are fresh ones
        f = fit_next(search.C, f)
        test_acc[d] = float(probe.accuracy(f, split.test)[0])
    return search.C, _val_scores(search, cfg.metric), search.record(), test_acc, conv


def _split(name: str, cfg: ProtocolConfig, features: Features, seed: int, dev, standardize: bool) -> Split:
    """Validation, pool and labelled rows of the training split, after checking both splits' labels."""
    train, test = features.train, features.test
    K = cfg.n_classes
    y = np.asarray(train.labels)
    for split, labels in ((cfg.train_split, y), (cfg.test_split, np.asarray(test.labels))):
        if labels.size and labels.max() >= K:
            raise UserError(f"split {split!r} has label {int(labels.max())} but the {name} protocol has {K} classes")
    if cfg.validation == "uniform":  # the authors' shuffle: val and pool in its order, labelled rows only
        labelled_rows = np.flatnonzero(y >= 0)
        val, pool = (labelled_rows[i] for i in authors.validation_split(len(labelled_rows), cfg.val_size, seed))
    else:
        val, pool = split_validation(y, cfg.val_size, K, seed, cfg.train_split)
    if cfg.labels_per_class:  # refuse a protocol that cannot be drawn before any fitting starts
        if cfg.selection == "fresh":
            authors.Draws(y, pool, cfg.labels_per_class, K, seed, cfg.train_split)
        else:
            draw_labels(y, pool, cfg.labels_per_class, K, seed, 0, split=cfg.train_split)
    labelled = np.flatnonzero(y >= 0)
    if standardize:  # unsupervised statistics of every labelled training row; never test
        mean, inv = standardizer(train.subset(labelled), dev)
        train, test = Standardized(train, mean, inv), Standardized(test, mean, inv)
    y_test = np.asarray(test.labels)
    if y_test.size == 0 or y_test.min() < 0:
        raise UserError(f"split {cfg.test_split!r} needs labels on every row to measure a probe")
    return Split(cfg, seed, train, test, y, val, pool, labelled)


def run_protocol(name: str, features: Features, probes: Sequence[str] = ProbeConfig.probes,
                 config: ProtocolConfig | None = None, Cs: Sequence[float] | None = None, seed: int | None = None,
                 device: str = "auto", backend: str = "torch", standardize: bool = False,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Run protocol ``name`` for each probe; one record (dict with ``records.CSV_COLUMNS`` + extras) per column.

    ``features``: :func:`from_arrays` or :func:`from_file`. ``Cs`` overrides the grid, ``seed``
    the protocol's seed.
    """
    cfg = config or get_protocol(name)
    seed = cfg.seed if seed is None else seed
    grid = check_Cs(Cs if Cs is not None else cfg.c_grid)
    dev = resolve_device(device)
    kinds = [get_probe(p, backend, cfg.n_classes, dev) for p in probes]
    split = _split(name, cfg, features, seed, dev, standardize)
    base = {"dataset": features.describe.get("dataset", name), "trained_on": "", "features": "arrays",
            "architecture": "",
            "checkpoint": "", "layers": "", "dim": split.train.dim, "device": str(dev), **features.describe}
    base["device"] = str(dev) if backend == "torch" else "cpu"
    tail = {"seed": seed, "backend": backend, "standardize": standardize, "val_rows": len(split.val_idx),
            "validation": cfg.validation, "selection": cfg.selection, "ci_ddof": cfg.ci_ddof}
    draw_kind = f"{cfg.labels_per_class}-per-class"
    records = []

    def say(msg: str) -> None:
        if log:
            log(msg)

    if features.describe.get("extraction_departures"):
        say(f"{name}: these features depart from the paper's extraction: {features.describe['extraction_departures']} "
            f"(re-extract with `extract --dataset {name}` and its defaults to follow it)")
    for probe in kinds:
        if cfg.full:
            probe.take_forms()
            col = full_column(probe, split, grid, lambda m: say(f"{probe.name} {name}/all: {m}"))
            col["solver_form"] = probe.take_forms()  # primal, dual (few rows: the Gram matrix) or both
            records.append({**base, "protocol": f"{name}/all", "probe": probe.name, **col, **tail})
            shown = "-" if col["C"] is None else f"{col['C']:g}"
            say(f"{probe.name} {name}/all: {cfg.metric} {col['mean']:.2f}% (C={shown})")
        if cfg.labels_per_class:
            probe.take_forms()
            col = few_labels_column(probe, split, grid, lambda m: say(f"{probe.name} {name}/{draw_kind}: {m}"))
            col["solver_form"] = probe.take_forms()
            records.append({**base, "protocol": f"{name}/{draw_kind}", "probe": probe.name, **col, **tail})
            shown = "-" if col["C"] is None else f"{col['C']:g}"
            say(f"{probe.name} {name}/{draw_kind}: {cfg.metric} {col['mean']:.2f} +- {col['ci95']:.2f}% (C={shown})")
    return records
