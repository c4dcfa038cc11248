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

``svhn`` draws the SVHN authors' rows (:mod:`.authors`, checked row for row against their own
loop): ``validation="uniform"`` (10000 train rows drawn uniformly, their shuffle),
``selection="fresh"`` (10 new draws for every C of the grid, from the one stream that then
gives the 100 measured draws, classes visited in their order: digits 1..9, then 0; lowest
mean validation error, ties to the smaller C), ``ci_ddof=0`` and seed 42. The others use ours,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.devices import machine_label, resolve_device
from ..core.errors import UserError
from ..core.progress import Progress
from ..core.threads import PROBE_SMALL_ELEMENTS, choose_threads, thread_scope
from . import authors
from .c_search import CSearch, search_C
from .config import ProbeConfig
from .estimators import get_probe
from .folds import check_folds, fold_column
from .linear import check_Cs
from .rows import POSTPROCESS, ArrayRows, Standardized, open_split, standardizer
from .splits import draw_fraction, fraction_counts, rows_fingerprint, stratified_validation

WIDE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
VALIDATIONS = ("per-class", "uniform", "stratified")
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
    # the order fresh draws visit the classes (None: 0, 1, ...); svhn: the authors' y - 1 coding
    # puts digit 0 last (authors.SVHN_DRAW_ORDER)
    class_order: tuple[int, ...] | None = None
    metric: str = "accuracy"  # or "error" (= 100 - accuracy), both in percent
    n_classes: int = 10
    paper_full: float | None = None
    paper_draws: float | None = None
    train_split: str = "train"
    test_split: str = "test"
    # validation "stratified" (the generic protocol): this share of each class, val_size at most
    val_fraction: float | None = None
    label_fractions: tuple[float, ...] = ()  # few-labels columns by share of each class (ImageNet's 1%, 10%)
    folds: bool = False  # the few-labels column is the feature file's predefined folds (STL-10)
    classes: tuple[str, ...] = ()  # class names, where the feature file or the registry names them
    kind: str = "registered"  # or "generic": built from the feature file
    description: str = ""


PROTOCOLS = {
    "cifar10": ProtocolConfig("cifar10", val_size=10000, labels_per_class=400, draws=10,
                              paper_full=82.8, paper_draws=73.8),
    "svhn": ProtocolConfig("svhn", val_size=10000, full=False, labels_per_class=100, draws=100,
                           select_draws=10, c_grid=SVHN_GRID, c_extend=0, metric="error", paper_draws=22.48,
                           validation="uniform", selection="fresh", ci_ddof=0, seed=authors.AUTHORS_SEED,
                           class_order=authors.SVHN_DRAW_ORDER),
    "fashion-mnist": ProtocolConfig("fashion-mnist", val_size=10000, labels_per_class=100, draws=10),
    "digits": ProtocolConfig("digits", val_size=300, labels_per_class=20, draws=10),
    "mnist": ProtocolConfig("mnist", val_size=10000, labels_per_class=100, draws=10),
    "cifar100": ProtocolConfig("cifar100", val_size=10000, labels_per_class=100, draws=10, n_classes=100),
    "cifar100-coarse": ProtocolConfig("cifar100-coarse", val_size=10000, labels_per_class=100, draws=10,
                                      n_classes=20),
    "stl10": ProtocolConfig(
        "stl10", val_size=100, full=False, folds=True, val_fraction=0.1, n_classes=10,
        description="STL-10's official protocol: each of the 10 predefined folds of 1000 train images "
                    "(fold_indices.txt) is fitted and scored on the 8000 test images; mean and std over the folds. "
                    "C: one for all folds, by mean accuracy on a stratified 10% of each fold's own rows, "
                    "held out of that fold's fit; the fold is then refitted whole at that C"),
    **{f"imagenet{s}": ProtocolConfig(
        f"imagenet{s}", val_size=10000, n_classes=1000, test_split="val", label_fractions=(0.01, 0.1), draws=3,
        description=f"Downsampled ImageNet {s}x{s}, 1000 classes: the official 50000 validation images are "
                    "the test split; C is chosen on 10000 train rows (10 per class) held out of the fits; the "
                    "few-labels columns are 1% and 10% of each class's train images, drawn (seeded) from the rows "
                    "outside validation: the semi-supervised protocol of SimCLR (Chen et al. 2020) and BYOL "
                    "(Grill et al. 2020), who use one fixed 1%/10% subset (the TF-datasets imagenet2012_subset "
                    "lists, ~12.8 and ~128 images per class); ours are 3 class-balanced draws of the same shares")
       for s in (32, 64)},
}


def get_protocol(name: str, base: ProtocolConfig | None = None, **overrides) -> ProtocolConfig:
    """The named protocol (or ``base``, e.g. a generic one) with some fields replaced (``None`` values are ignored)."""
    if base is None and name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    cfg = dataclasses.replace(base or PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})
    if cfg.validation != "stratified" and cfg.val_size < cfg.n_classes:
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
    info: dict = field(default_factory=dict)  # the feature file's /_dataset: classes, folds, a folder's split


def from_arrays(X_train, y_train, X_test, y_test, name: str = "arrays", info: dict | None = None,
                **describe) -> Features:
    """In-memory features (numpy or torch, any float dtype) as a protocol input; ``info`` as a
    feature file's ``/_dataset`` (e.g. ``folds``)."""
    tr = ArrayRows(X_train, y_train, split="train")
    te = ArrayRows(X_test, y_test, split="test")
    if tr.dim != te.dim:
        raise UserError(f"train features have {tr.dim} columns but test features {te.dim}")
    return Features(tr, te, {"features": name, "dim": tr.dim, **describe}, dict(info or {}))


def from_file(ff, cfg: ProtocolConfig, device="cpu", cache: bool | str = "auto") -> Features:
    """The protocol's train and test splits of an open ``store.FeatureFile``."""
    meta = ff.meta
    layers = meta.get("layers") or []
    sha = str(meta.get("checkpoint_sha256", "") or "")
    describe = {"dataset": meta.get("dataset", cfg.name), "trained_on": str(meta.get("trained_on", "") or ""),
                "features": getattr(ff, "path", None),
                "architecture": meta.get("architecture", ""), "checkpoint": sha[:12],
                "layers": "+".join(layers) if isinstance(layers, (list, tuple)) else str(layers), "dim": ff.dim}
    if describe["features"] is not None:  # the name in the tables; the whole path names the JSON records
        describe["features_path"] = str(Path(str(describe["features"])).resolve())
        describe["features"] = Path(str(describe["features"])).name
    # the recipe's post-processing (files written before the attr existed: kmeans files are Coates's)
    recorded = str(meta.get("postprocess", "") or ("coates" if meta.get("architecture") == "kmeans" else ""))
    describe.update(bn_mode=meta.get("bn_mode"), feature_dtype=ff.dtype, postprocess=recorded,
                    extraction_departures=_extraction_departures(cfg.name, meta.get("bn_mode"), ff.dtype))
    for split in (cfg.train_split, cfg.test_split):
        if split not in ff.splits:
            raise UserError(f"feature file has no {split!r} split (has: {', '.join(ff.splits) or 'none'}); "
                            f"the {cfg.name} protocol needs {cfg.train_split!r} and {cfg.test_split!r}")
    return Features(open_split(ff, cfg.train_split, device, cache), open_split(ff, cfg.test_split, device, cache),
                    describe, ff.dataset_info())


def _extraction_departures(protocol: str, bn_mode: str | None, dtype: str) -> str:
    """Where a feature file's extraction differs from the paper protocol's (the dataset's registry
    entry, ``DatasetSpec.paper_extraction``): e.g. ``"bn recompute (paper: authors); float16
    (paper: float32)"``, empty when it does not."""
    from ..extract.config import paper_extraction

    paper = paper_extraction(protocol)
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
    folds: np.ndarray | None = None  # predefined folds of train rows (STL-10), checked
    label_fraction: float | None = None  # a column drawing this share of each class instead

    def draw(self, d: int, stream: int = 1):
        """The d-th seeded draw from the pool: ``labels_per_class`` of each class, or ``label_fraction`` of it."""
        cfg = self.cfg
        if self.label_fraction is not None:
            return self.train.subset(draw_fraction(self.y, self.pool_idx, self.label_fraction, cfg.n_classes,
                                                   self.seed, d, stream=stream, split=cfg.train_split))
        return self.train.subset(draw_labels(self.y, self.pool_idx, cfg.labels_per_class, cfg.n_classes, self.seed,
                                             d, stream=stream, split=cfg.train_split))

    @property
    def n_draw_labels(self) -> int:
        """Labels in one draw."""
        if self.label_fraction is not None:
            return int(fraction_counts(self.y, self.label_fraction, self.cfg.n_classes).sum())
        return self.cfg.labels_per_class * self.cfg.n_classes

def _held(rows, probe):
    """The validation rows gathered once into one matrix on the probe's device when they fit in a
    quarter of its free memory: every fit of a column scores them, and a subset would gather
    them again each time (10000 x 7168 floats per fit in the SVHN authors' 170)."""
    from ..core.devices import free_memory
    from .rows import resident

    return resident(rows, probe.device, free_memory(probe.device) // 4)


def _quiet() -> Progress:
    return Progress(0, "", mode=False)


def full_column(probe, split: Split, grid: np.ndarray, say: Callable[[str], None] = lambda m: None,
                bar: Progress | None = None) -> dict:
    """The ``all`` column: C by validation accuracy, then one refit on every labelled row, measured on test.

    ``bar`` counts its fits: one per pass over the grid (a widened grid adds one), then the refit.
    """
    t0 = time.perf_counter()
    bar = bar or _quiet()
    bar.add_total(2 if probe.has_C else 1)
    train, metric = split.train, split.cfg.metric
    C, val_scores, conv, searched = None, {}, True, {"c_at_edge": None, "c_grid": None}
    if probe.has_C:
        pool, val_rows = train.subset(split.pool_idx), _held(train.subset(split.val_idx), probe)  # held out
        fits: dict[float, object] = {}  # C -> its one-C selection fit, the refit's warm start

        def evaluate(Cs: list[float]) -> np.ndarray:
            nonlocal conv
            edge = fits[min(fits, key=lambda c: abs(math.log(c / Cs[0])))] if fits else None
            if fits:
                bar.add_total(1)  # the grid widened: one more pass
            sel = probe.fit(pool, Cs, warm=edge)
            bar.update()
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
    bar.update()
    acc = float(probe.accuracy(final, split.test)[0])  # test rows: measured once, C fixed
    n_test = len(split.test.labels)
    return {"C": C, "n_labels": len(split.labelled_idx), "metric": metric, "mean": _score(acc, metric),
            "ci95": 100 * 1.96 * math.sqrt(acc * (1 - acc) / n_test), "n_runs": 1,
            "fit_seconds": time.perf_counter() - t0, "paper_value": split.cfg.paper_full, "std": 0.0,
            "val_scores": val_scores, "converged": conv, **searched}


def few_labels_column(probe, split: Split, grid: np.ndarray, say: Callable[[str], None],
                      bar: Progress | None = None) -> dict:
    """The ``<n>-per-class`` column: C by mean validation accuracy over draws, test accuracy over draws.

    Without ``select_draws`` the draws that chose C are measured at it; with it (the SVHN
    authors' protocol) ``select_draws`` draws choose C and ``draws`` fresh ones (another seed
    stream) are fitted at that C and measured. A probe without C is measured on ``draws`` draws.
    ``bar`` counts the fits (a draw's fit over the whole grid is one).
    """
    t0 = time.perf_counter()
    cfg = split.cfg
    bar = bar or _quiet()
    C, val_scores, conv, searched = None, {}, True, {"c_at_edge": None, "c_grid": None}
    if not probe.has_C:
        bar.add_total(cfg.draws)
        test_acc = np.zeros(cfg.draws)
        for d in range(cfg.draws):
            test_acc[d] = probe.accuracy(probe.fit(split.draw(d), None), split.test)[0]
            bar.update()
    elif cfg.selection == "fresh":
        C, val_scores, searched, test_acc, conv = _fresh_draws(probe, split, grid, say, bar)
    else:
        sel_draws = cfg.select_draws or cfg.draws
        bar.add_total(sel_draws + (cfg.draws if cfg.select_draws else 0))
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
            if last:
                bar.add_total(sel_draws)  # the grid widened: every draw once more
            for d, rows in enumerate(draws):
                f = probe.fit(rows, Cs, warm=f)
                val_acc[d] = probe.accuracy(f, val_src)
                conv &= bool(f.converged.all())
                if not cfg.select_draws:
                    test_acc[d] = probe.accuracy(f, split.test)
                bar.update()
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
                bar.update()
        else:
            test_acc = test_by_C[C]
    scores = np.array([_score(a, cfg.metric) for a in test_acc])
    mean, std = float(scores.mean()), float(scores.std(ddof=cfg.ci_ddof)) if len(scores) > 1 else 0.0
    return {"C": C, "n_labels": split.n_draw_labels, "metric": cfg.metric, "mean": mean,
            "ci95": 1.96 * std, "n_runs": cfg.draws, "fit_seconds": time.perf_counter() - t0,
            "paper_value": cfg.paper_draws, "std": std, "val_scores": val_scores, "per_draw": scores.tolist(),
            "converged": conv, **searched}


def _fresh_draws(probe, split: Split, grid: np.ndarray, say: Callable[[str], None], bar: Progress) -> tuple:
    """The SVHN authors' selection: ``select_draws`` fresh draws for every C in turn, from one
    stream (:class:`.authors.Draws`) that then gives the ``draws`` measured at the chosen C."""
    cfg, conv = split.cfg, True
    draws = authors.Draws(split.y, split.pool_idx, cfg.labels_per_class, cfg.n_classes, split.seed, cfg.train_split,
                          cfg.class_order)
    val_src = _held(split.train.subset(split.val_idx), probe)
    last: dict[float, object] = {}
    bar.add_total(len(grid) * cfg.select_draws + cfg.draws)

    def fit_next(C: float, warm):
        nonlocal conv
        f = probe.fit(split.train.subset(np.sort(draws.next())), [C], warm=warm)
        conv &= bool(f.converged.all())
        bar.update()
        return f

    def evaluate(Cs: list[float]) -> np.ndarray:
        means = []
        if last:
            bar.add_total(len(Cs) * cfg.select_draws)  # the grid widened
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


def _scaling(features: Features, standardize: bool, postprocess: bool) -> tuple[str, int, float] | None:
    """What the columns are scaled by before any fit: ``--standardize`` (unit variance), else the
    post-processing the features record (:data:`.rows.POSTPROCESS`) unless turned off; None: nothing."""
    if standardize:
        return "unit", 0, 0.0
    recorded = features.describe.get("postprocess") or ""
    if not postprocess or not recorded:
        return None
    if recorded not in POSTPROCESS:
        raise UserError(f"the features record post-processing {recorded!r}, which this version does not know "
                        f"(known: {', '.join(POSTPROCESS)}); pass --no-postprocess to probe them as they are")
    return (recorded, *POSTPROCESS[recorded])


def _split(name: str, cfg: ProtocolConfig, features: Features, seed: int, dev,
           scaling: tuple[str, int, float] | None) -> Split:
    """Validation, pool and labelled rows of the training split, after checking both splits' labels."""
    train, test = features.train, features.test
    K = cfg.n_classes
    y = np.asarray(train.labels)
    check_labels(name, cfg, y, np.asarray(test.labels))
    if cfg.folds and not (cfg.full or cfg.labels_per_class or cfg.label_fractions):  # each fold holds out its own
        val, pool = np.zeros(0, np.int64), np.flatnonzero(y >= 0)
    elif cfg.validation == "uniform":  # the authors' shuffle: val and pool in its order, labelled rows only
        labelled_rows = np.flatnonzero(y >= 0)
        val, pool = (labelled_rows[i] for i in authors.validation_split(len(labelled_rows), cfg.val_size, seed))
    elif cfg.validation == "stratified":
        val, pool = stratified_validation(y, cfg.val_fraction or 0.1, cfg.val_size, K, seed, cfg.train_split,
                                          cfg.classes)
    else:
        val, pool = split_validation(y, cfg.val_size, K, seed, cfg.train_split)
    folds = check_folds(features.info.get("folds"), y, cfg.train_split) if cfg.folds else None
    for frac in cfg.label_fractions:  # refuse a protocol that cannot be drawn before any fitting starts
        draw_fraction(y, pool, frac, K, seed, 0, split=cfg.train_split)
    if cfg.labels_per_class:  # refuse a protocol that cannot be drawn before any fitting starts
        if cfg.selection == "fresh":
            authors.Draws(y, pool, cfg.labels_per_class, K, seed, cfg.train_split, cfg.class_order)
        else:
            draw_labels(y, pool, cfg.labels_per_class, K, seed, 0, split=cfg.train_split)
    labelled = np.flatnonzero(y >= 0)
    if scaling is not None:  # unsupervised statistics of every labelled training row; never test
        mean, inv = standardizer(train.subset(labelled), dev, ddof=scaling[1], eps=scaling[2])
        train, test = Standardized(train, mean, inv), Standardized(test, mean, inv)
    y_test = np.asarray(test.labels)
    if y_test.size == 0 or y_test.min() < 0:
        raise UserError(f"split {cfg.test_split!r} needs labels on every row to measure a probe")
    return Split(cfg, seed, train, test, y, val, pool, labelled, folds)


def check_labels(name: str, cfg: ProtocolConfig, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Every label names one of the protocol's classes, and every class that test measures has
    training rows (a probe could never predict it otherwise): refused, naming the class, before any fit."""
    K = cfg.n_classes
    for split, labels in ((cfg.train_split, y_train), (cfg.test_split, y_test)):
        if labels.size and labels.max() >= K:
            raise UserError(f"split {split!r} has label {int(labels.max())} but the {name} protocol has {K} classes"
                            + (f" ({', '.join(cfg.classes[:3])}, ...)" if cfg.classes else ""))
    absent = np.setdiff1d(np.unique(y_test[y_test >= 0]), np.unique(y_train[y_train >= 0]))
    if absent.size:
        c = int(absent[0])
        named = f" ({cfg.classes[c]!r})" if c < len(cfg.classes) else ""
        raise UserError(f"class {c}{named} has {cfg.test_split} rows but no {cfg.train_split} rows; a probe could "
                        f"never predict it")


def run_protocol(name: str, features: Features, probes: Sequence[str] = ProbeConfig.probes,
                 config: ProtocolConfig | None = None, Cs: Sequence[float] | None = None, seed: int | None = None,
                 device: str = "auto", backend: str = "torch", standardize: bool = False,
                 log: Callable[[str], None] | None = None, postprocess: bool = True,
                 progress: str | bool | None = None, threads: int | None = None) -> list[dict]:
    """Run protocol ``name`` for each probe; one record (dict with ``records.CSV_COLUMNS`` + extras) per column.

    ``features``: :func:`from_arrays` or :func:`from_file`. ``Cs`` overrides the grid, ``seed``
    the protocol's seed. ``standardize``: every column to zero mean, unit variance (train
    rows); otherwise, with ``postprocess``, the scaling the features record (``kmeans:K``:
    Coates's). Every record says which was applied (``postprocess``: ``unit``, ``coates``
    or ``none``). Every record names the protocol (``protocol_kind``: registered or
    generic, ``protocol_description``) and its validation rows (count and fingerprint).
    ``progress``: each column's fits as one bar on a terminal, lines with the ETA off one
    (:class:`~dcgan_features.core.progress.Progress`; None: when ``log`` is given).
    ``threads``: CPU threads (:mod:`dcgan_features.core.threads`; None: its policy).
    """
    cfg = config or get_protocol(name)
    seed = cfg.seed if seed is None else seed
    grid = check_Cs(Cs if Cs is not None else cfg.c_grid)
    dev = resolve_device(device)
    kinds = [get_probe(p, backend, cfg.n_classes, dev) for p in probes]
    scaling = _scaling(features, standardize, postprocess)
    split = _split(name, cfg, features, seed, dev, scaling)
    n_rows = len(np.asarray(features.train.labels))
    choice = choose_threads(threads, n_rows * split.train.dim, PROBE_SMALL_ELEMENTS,
                            dev.type if backend == "torch" else "cpu")
    with thread_scope(choice):
        return _run_columns(name, cfg, features, kinds, split, grid, seed, dev, backend, standardize, log,
                            (log is not None) if progress is None else progress, choice, scaling)


def _run_columns(name: str, cfg: ProtocolConfig, features: Features, kinds: list, split: Split, grid, seed: int,
                 dev, backend: str, standardize: bool, log, progress, choice, scaling) -> list[dict]:
    """Each probe's columns, in order, each under its own progress bar."""
    base = {"dataset": features.describe.get("dataset", name), "trained_on": "", "features": "arrays",
            "architecture": "",
            "checkpoint": "", "layers": "", "dim": split.train.dim, "device": str(dev), **features.describe}
    base["device"] = machine_label(dev if backend == "torch" else resolve_device("cpu"))  # the machine, in full
    tail = {"seed": seed, "backend": backend, "standardize": standardize,
            "postprocess": scaling[0] if scaling else "none", "val_rows": len(split.val_idx),
            "val_rows_sha256": rows_fingerprint(split.val_idx), "validation": cfg.validation,
            "selection": cfg.selection, "ci_ddof": cfg.ci_ddof, "protocol_kind": cfg.kind,
            "protocol_description": cfg.description or describe_protocol(cfg), **choice.record()}
    records = []

    def say(msg: str) -> None:
        if log:
            log(msg)

    if features.describe.get("extraction_departures"):
        say(f"{name}: these features depart from the paper's extraction: {features.describe['extraction_departures']} "
            f"(re-extract with `extract --dataset {name}` and its defaults to follow it)")
    for probe in kinds:
        for column, run in _columns(cfg, split, probe, grid):
            probe.take_forms()
            with Progress(0, f"{probe.name} {name}/{column}", unit="fit", mode=progress) as bar:
                col = run(lambda m: say(f"{probe.name} {name}/{column}: {m}"), bar)
            col["solver_form"] = probe.take_forms()  # primal, dual (few rows: the Gram matrix) or both
            extra = {k: col.pop(k) for k in ("val_rows", "val_rows_sha256") if k in col}  # a column's own (folds)
            records.append({**base, "protocol": f"{name}/{column}", "probe": probe.name, **col, **tail, **extra})
            shown = "-" if col["C"] is None else f"{col['C']:g}"
            pm = f" +- {col['ci95']:.2f}" if col["n_runs"] > 1 else ""
            say(f"{probe.name} {name}/{column}: {cfg.metric} {col['mean']:.2f}{pm}% (C={shown})")
    return records


def _columns(cfg: ProtocolConfig, split: Split, probe, grid: np.ndarray) -> list[tuple[str, Callable]]:
    """The protocol's columns, in order, each (name, run(say, bar) -> column dict)."""
    cols = []
    if cfg.full:
        cols.append(("all", lambda say, bar: full_column(probe, split, grid, say, bar)))
    if cfg.labels_per_class:
        cols.append((f"{cfg.labels_per_class}-per-class",
                     lambda say, bar: few_labels_column(probe, split, grid, say, bar)))
    for frac in cfg.label_fractions:
        part = dataclasses.replace(split, label_fraction=frac)
        cols.append((f"{100 * frac:g}%-labels",
                     lambda say, bar, part=part: few_labels_column(probe, part, grid, say, bar)))
    if cfg.folds:
        cols.append((f"{len(split.folds)}-folds", lambda say, bar: fold_column(
            probe, split.train, split.test, split.y, split.folds, cfg, split.seed, grid,
            lambda a: _score(a, cfg.metric), say)))
    return cols


def describe_protocol(cfg: ProtocolConfig) -> str:
    """One sentence saying what a protocol does (for records without a written description)."""
    if cfg.validation == "stratified":
        val = (f"a stratified {100 * (cfg.val_fraction or 0.1):g}% of each class's train rows (at most "
               f"{cfg.val_size}, at least one per class) held out to choose C")
    elif cfg.validation == "uniform":
        val = f"{cfg.val_size} train rows drawn uniformly (the SVHN authors') held out to choose C"
    else:
        val = f"{cfg.val_size} train rows, class-balanced, held out to choose C"
    cols = (["all: refit on every labelled train row"] if cfg.full else []) + \
        ([f"{cfg.labels_per_class}-per-class: {cfg.draws} seeded draws"] if cfg.labels_per_class else [])
    return f"{cfg.kind} protocol, {cfg.n_classes} classes: {val}; {'; '.join(cols) or 'no column'}"
