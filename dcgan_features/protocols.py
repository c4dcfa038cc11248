"""Evaluation protocols: which rows train a probe, which choose C, which measure it.

C is always chosen on validation rows held out of the training split, never on test.
Two columns, each optional per protocol:

- ``all``: C by validation accuracy of probes fitted on the training rows minus the
  validation rows; then refit at that C on every labelled training row (warm-started from
  the selection fit) and measure on test. ``ci95`` is the binomial 1.96 * sqrt(p(1-p)/n_test).
- ``<n>-per-class``: ``labels_per_class`` labelled rows per class drawn (seeded, class
  balanced) from the non-validation rows. With ``select_draws == 0`` every draw is fitted
  on the whole grid, C is the best mean validation accuracy over the draws and the test
  numbers of those same draws at that C are reported; with ``select_draws > 0`` (the SVHN
  authors' protocol) C is chosen on that many draws and ``draws`` fresh draws are measured.
  ``mean +- ci95`` is mean +- 1.96 std over draws, as the SVHN paper reports it.

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
from typing import Callable, Sequence

import numpy as np

from .errors import UserError

WIDE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SVHN_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)  # the authors' grid
PROBE_NAMES = ("svm", "logreg", "knn")
CSV_COLUMNS = ("dataset", "protocol", "features", "architecture", "checkpoint", "layers", "dim", "probe", "C",
               "n_labels", "metric", "mean", "ci95", "n_runs", "fit_seconds", "device", "paper_value")


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
                           select_draws=10, c_grid=SVHN_GRID, metric="error", paper_draws=22.48),
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
    from .rows import ArrayRows

    tr = ArrayRows(X_train, y_train, split="train")
    te = ArrayRows(X_test, y_test, split="test")
    if tr.dim != te.dim:
        raise UserError(f"train features have {tr.dim} columns but test features {te.dim}")
    return Features(tr, te, {"features": name, "dim": tr.dim, **describe})


def from_file(ff, cfg: ProtocolConfig, device="cpu", cache: bool | str = "auto") -> Features:
    """The protocol's train and test splits of an open ``store.FeatureFile``."""
    from .rows import open_split

    meta = ff.meta
    layers = meta.get("layers") or []
    sha = str(meta.get("checkpoint_sha256", "") or "")
    describe = {"dataset": meta.get("dataset", cfg.name), "features": getattr(ff, "path", None),
                "architecture": meta.get("architecture", ""), "checkpoint": sha[:12],
                "layers": "+".join(layers) if isinstance(layers, (list, tuple)) else str(layers), "dim": ff.dim}
    if describe["features"] is not None:
        from pathlib import Path

        describe["features"] = Path(str(describe["features"])).name
    for split in (cfg.train_split, cfg.test_split):
        if split not in ff.splits:
            raise UserError(f"feature file has no {split!r} split (has: {', '.join(ff.splits) or 'none'}); "
                            f"the {cfg.name} protocol needs {cfg.train_split!r} and {cfg.test_split!r}")
    return Features(open_split(ff, cfg.train_split, device, cache), open_split(ff, cfg.test_split, device, cache),
                    describe)


# ------------------------------------------------------------------------ running


def _score(acc: float, metric: str) -> float:
    return 100.0 * acc if metric == "accuracy" else 100.0 * (1.0 - acc)


def _pick(val_acc: np.ndarray) -> int:
    """Index of the best mean validation accuracy; ties go to the smaller C (the grid's order)."""
    return int(np.flatnonzero(val_acc >= val_acc.max() - 1e-12)[0])


def run_protocol(name: str, features: Features, probes: Sequence[str] = ("svm", "logreg"),
                 config: ProtocolConfig | None = None, Cs: Sequence[float] | None = None, seed: int = 0,
                 device: str = "auto", backend: str = "torch", standardize: bool = False,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Run protocol ``name`` for each probe; one record (dict with :data:`CSV_COLUMNS` + extras) per column.

    ``features``: :func:`from_arrays` or :func:`from_file`. ``Cs`` overrides the grid.
    """
    from .knn import knn_predict
    from .probes import check_Cs, fit
    from .devices import resolve_device
    from .rows import Standardized, standardizer

    cfg = config or get_protocol(name)
    grid = check_Cs(Cs if Cs is not None else cfg.c_grid)
    dev = resolve_device(device)
    for p in probes:
        if p not in PROBE_NAMES:
            raise UserError(f"unknown probe {p!r}; choose from {', '.join(PROBE_NAMES)} or all")
    train, test = features.train, features.test
    K = cfg.n_classes
    y = np.asarray(train.labels)
    if y.size and y.max() >= K:
        raise UserError(f"split {cfg.train_split!r} has label {int(y.max())} but the {name} protocol has {K} classes")
    val, pool = split_validation(y, cfg.val_size, K, seed, cfg.train_split)
    if cfg.labels_per_class:  # refuse a protocol that cannot be drawn before any fitting starts
        draw_labels(y, pool, cfg.labels_per_class, K, seed, 0, split=cfg.train_split)
    labelled = np.flatnonzero(y >= 0)
    if standardize:  # unsupervised statistics of every labelled training row; never test
        mean, inv = standardizer(train.subset(labelled), dev)
        train, test = Standardized(train, mean, inv), Standardized(test, mean, inv)
    y_test = np.asarray(test.labels)
    if y_test.size == 0 or y_test.min() < 0:
        raise UserError(f"split {cfg.test_split!r} needs labels on every row to measure a probe")
    base = {"dataset": features.describe.get("dataset", name), "features": "arrays", "architecture": "",
            "checkpoint": "", "layers": "", "dim": train.dim, "device": str(dev), **features.describe}
    base["device"] = str(dev) if backend == "torch" else "cpu"
    draw_kind = f"{cfg.labels_per_class}-per-class"
    records = []

    def say(msg: str) -> None:
        if log:
            log(msg)

    for probe in probes:
        if cfg.full:
            t0 = time.perf_counter()
            if probe == "knn":
                pred = knn_predict(train.subset(labelled), test, K, device=dev)
                acc, C, val_scores, conv = float((pred == y_test).mean()), None, {}, True
            else:
                sel = fit(probe, train.subset(pool), grid, backend, K, dev)
                val_acc = sel.accuracy(train.subset(val), dev)
                best = _pick(val_acc)
                kw = {"init": sel.select(best)} if backend == "torch" else {}
                final = fit(probe, train.subset(labelled), grid[best:best + 1], backend, K, dev, **kw)
                acc, C = float(final.accuracy(test, dev)[0]), float(grid[best])
                val_scores = {f"{c:g}": _score(a, cfg.metric) for c, a in zip(grid, val_acc)}
                conv = bool(sel.converged.all() and final.converged.all())
            mean = _score(acc, cfg.metric)
            records.append({**base, "protocol": f"{name}/all", "probe": probe, "C": C, "n_labels": len(labelled),
                            "metric": cfg.metric, "mean": mean,
                            "ci95": 100 * 1.96 * math.sqrt(acc * (1 - acc) / len(y_test)), "n_runs": 1,
                            "fit_seconds": time.perf_counter() - t0, "paper_value": cfg.paper_full,
                            "std": 0.0, "val_scores": val_scores, "converged": conv, "seed": seed,
                            "backend": backend, "standardize": standardize, "val_rows": len(val)})
            say(f"{probe} {name}/all: {cfg.metric} {mean:.2f}% (C={'-' if C is None else f'{C:g}'})")
        if cfg.labels_per_class:
            t0 = time.perf_counter()
            sel_draws = cfg.select_draws or cfg.draws
            val_src = train.subset(val)
            test_acc = np.zeros((cfg.draws, len(grid)))
            val_acc = np.zeros((sel_draws, len(grid)))
            conv = True
            if probe == "knn":
                accs = [float((knn_predict(train.subset(draw_labels(y, pool, cfg.labels_per_class, K, seed, d,
                                                                    split=cfg.train_split)), test, K,
                                           device=dev) == y_test).mean()) for d in range(cfg.draws)]
                best, C, val_scores = 0, None, {}
                test_acc = np.array(accs)[:, None]
            else:
                # warm starts: each draw's grid starts from the previous draw's solutions (same
                # C, same distribution of rows): fewer Newton steps, same optimum
                warm = (lambda prev: {"init": prev} if backend == "torch" and prev is not None else {})
                f = None
                for d in range(sel_draws):
                    rows = draw_labels(y, pool, cfg.labels_per_class, K, seed, d, split=cfg.train_split)
                    f = fit(probe, train.subset(rows), grid, backend, K, dev, **warm(f))
                    val_acc[d] = f.accuracy(val_src, dev)
                    conv &= bool(f.converged.all())
                    if not cfg.select_draws:
                        test_acc[d] = f.accuracy(test, dev)
                    say(f"{probe} {name}/{draw_kind}: selection draw {d + 1}/{sel_draws}")
                best = _pick(val_acc.mean(0))
                C = float(grid[best])
                val_scores = {f"{c:g}": _score(a, cfg.metric) for c, a in zip(grid, val_acc.mean(0))}
                if cfg.select_draws:  # fresh draws (another seed stream) at the chosen C only
                    f = f.select(best)
                    for d in range(cfg.draws):
                        rows = draw_labels(y, pool, cfg.labels_per_class, K, seed, d, stream=2,
                                           split=cfg.train_split)
                        f = fit(probe, train.subset(rows), [C], backend, K, dev, **warm(f))
                        test_acc[d, best] = float(f.accuracy(test, dev)[0])
                        conv &= bool(f.converged.all())
            scores = np.array([_score(a, cfg.metric) for a in test_acc[:, best]])
            mean, std = float(scores.mean()), float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
            records.append({**base, "protocol": f"{name}/{draw_kind}", "probe": probe, "C": C,
                            "n_labels": cfg.labels_per_class * K, "metric": cfg.metric, "mean": mean,
                            "ci95": 1.96 * std, "n_runs": cfg.draws, "fit_seconds": time.perf_counter() - t0,
                            "paper_value": cfg.paper_draws, "std": std, "val_scores": val_scores,
                            "per_draw": scores.tolist(), "converged": conv, "seed": seed, "backend": backend,
                            "standardize": standardize, "val_rows": len(val)})
            shown = "-" if C is None else f"{C:g}"
            say(f"{probe} {name}/{draw_kind}: {cfg.metric} {mean:.2f} +- {1.96 * std:.2f}% (C={shown})")
    return records


# ------------------------------------------------------------------------ outputs


def format_table(records: Sequence[dict]) -> str:
    """The records as a fixed-width table for the terminal."""
    head = f"{'protocol':<26} {'probe':<7} {'C':>8} {'labels':>7} {'metric':<8} {'mean':>7} {'+-95%':>6} " \
           f"{'runs':>4} {'paper':>6} {'fit s':>8}"
    lines = [head, "-" * len(head)]
    for r in records:
        C = "-" if r["C"] is None else f"{r['C']:g}"
        paper = "-" if r["paper_value"] is None else f"{r['paper_value']:g}"
        lines.append(f"{r['protocol']:<26} {r['probe']:<7} {C:>8} {r['n_labels']:>7} {r['metric']:<8} "
                     f"{r['mean']:>7.2f} {r['ci95']:>6.2f} {r['n_runs']:>4} {paper:>6} {r['fit_seconds']:>8.1f}")
    return "\n".join(lines)


def csv_value(v) -> str:
    """A record value as a CSV cell: None empty, floats to 6 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_records(records: Sequence[dict], out_dir) -> list:
    """One JSON file per record and the rows appended to ``probes.csv``, all written atomically.

    A record's JSON is named ``<features>__<protocol>__<probe>.json`` (a rerun replaces it).
    Returns the paths written.
    """
    import json
    from pathlib import Path

    from .atomic import write_csv_atomic, write_text_atomic

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {str(out)!r}: {e.strerror}") from None
    written = []
    for r in records:
        stem = "__".join(str(r[k]).replace("/", "-").replace(" ", "_") for k in ("features", "protocol", "probe"))
        path = out / f"{stem}.json"
        write_text_atomic(path, json.dumps(r, indent=1, default=str) + "\n")
        written.append(path)
    csv_path = out / "probes.csv"
    write_csv_atomic(csv_path, CSV_COLUMNS, records, append=True, value=csv_value)
    written.append(csv_path)
    return written
