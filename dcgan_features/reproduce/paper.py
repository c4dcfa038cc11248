"""The paper's own figures (Radford, Metz & Chintala 2015), quoted, never measured here.

Table 1 (CIFAR-10, accuracy %, features of a DCGAN trained on ImageNet-1k, an L2-SVM on
all 50000 training labels and on 400 per class) and Table 2 (SVHN, 1000 labels, test error
%). Rows carry ``features`` starting with ``paper:`` and the number in ``paper_value`` only,
so no table can mistake them for ours. The paper prints ``73.8% (+-0.4%)`` for the 400-per-class
column without saying what the +- is (a std or an interval, over how many draws):
:data:`PM_DEFINITION` says so wherever it is shown.

A figure of ours is compared with the paper's (a gap) only when it measured the paper's
column: the same column and the same number of labels (:func:`same_column`); otherwise
the paper's figure is shown apart, labelled with its own column.

>>> [r["paper_value"] for r in paper_records("svhn") if "DCGAN" in r["features"]]
[22.48]
>>> paper_records("digits")
[]
>>> same_column({"protocol": "cifar10/400-per-class", "n_labels": 4000})
True
>>> same_column({"protocol": "cifar10/all", "n_labels": 2000})   # a --limit run: fewer labels
False
"""

from __future__ import annotations

PAPER_ROWS = [
    ("cifar10", "cifar10/all", "paper: 1 Layer K-means", "accuracy", 80.6),
    ("cifar10", "cifar10/400-per-class", "paper: 1 Layer K-means", "accuracy", 63.7),
    ("cifar10", "cifar10/all", "paper: 3 Layer K-means Learned RF", "accuracy", 82.0),
    ("cifar10", "cifar10/400-per-class", "paper: 3 Layer K-means Learned RF", "accuracy", 70.7),
    ("cifar10", "cifar10/all", "paper: View Invariant K-means", "accuracy", 81.9),
    ("cifar10", "cifar10/400-per-class", "paper: View Invariant K-means", "accuracy", 72.6),
    ("cifar10", "cifar10/all", "paper: Exemplar CNN", "accuracy", 84.3),
    ("cifar10", "cifar10/400-per-class", "paper: Exemplar CNN", "accuracy", 77.4),
    ("cifar10", "cifar10/all", "paper: DCGAN (ours) + L2-SVM", "accuracy", 82.8),
    ("cifar10", "cifar10/400-per-class", "paper: DCGAN (ours) + L2-SVM", "accuracy", 73.8),
    ("svhn", "svhn/100-per-class", "paper: KNN", "error", 77.93),
    ("svhn", "svhn/100-per-class", "paper: TSVM", "error", 66.55),
    ("svhn", "svhn/100-per-class", "paper: M1+M2", "error", 36.02),
    ("svhn", "svhn/100-per-class", "paper: SWWAE without dropout", "error", 27.83),
    ("svhn", "svhn/100-per-class", "paper: SWWAE with dropout", "error", 23.56),
    ("svhn", "svhn/100-per-class", "paper: DCGAN (ours) + L2-SVM", "error", 22.48),
    ("svhn", "svhn/100-per-class", "paper: Supervised CNN, same architecture", "error", 28.87),
]
PAPER_NOTE = "the paper's figure (Radford et al. 2015), quoted"
DCGAN = "paper: DCGAN (ours) + L2-SVM"
# labels each of the paper's columns was fitted on: all CIFAR-10 train labels, 400 per class, 1000 SVHN labels
PAPER_LABELS = {"cifar10/all": 50000, "cifar10/400-per-class": 4000, "svhn/100-per-class": 1000}
# the +- the paper prints beside a figure (only where this project quotes it)
PAPER_PM = {("cifar10/400-per-class", DCGAN): 0.4}
PM_DEFINITION = "the paper's +- is printed without its definition (std or interval, over how many draws: not stated)"


def same_column(record: dict) -> bool:
    """Whether ``record`` measured one of the paper's columns: same column, same number of labels."""
    want = PAPER_LABELS.get(str(record.get("protocol")))
    try:
        return want is not None and int(float(record.get("n_labels"))) == want
    except (TypeError, ValueError):
        return False


def dcgan_figures(dataset: str) -> dict[str, tuple[float, float | None]]:
    """The paper's DCGAN + L2-SVM figure per column (``cifar10/all``): (value, +- or None)."""
    return {p: (v, PAPER_PM.get((p, f))) for d, p, f, m, v in PAPER_ROWS if d == dataset and f == DCGAN}


def paper_records(dataset: str | None = None) -> list[dict]:
    """The paper's rows as CSV records (all datasets, or one)."""
    return [{"dataset": d, "protocol": p, "features": f, "probe": "svm" if "L2-SVM" in f else "",
             "metric": m, "paper_value": v, "n_labels": PAPER_LABELS.get(p),
             "notes": PAPER_NOTE + (f"; +- {PAPER_PM[(p, f)]} as printed, {PM_DEFINITION}" if (p, f) in PAPER_PM
                                    else "")}
            for d, p, f, m, v in PAPER_ROWS if dataset is None or d == dataset]
