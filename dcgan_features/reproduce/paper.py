"""The paper's own figures (Radford, Metz & Chintala 2015), quoted, never measured here.

Table 1 (CIFAR-10, accuracy %, features of a DCGAN trained on ImageNet-1k; the column
"Accuracy (400 per class)" is mean +- std of 10 draws) and Table 2 (SVHN, 1000 labels,
test error %). Rows carry ``features`` starting with ``paper:`` and the number in
``paper_value`` only, so no table can mistake them for ours.

>>> [r["paper_value"] for r in paper_records("svhn") if "DCGAN" in r["features"]]
[22.48]
>>> paper_records("digits")
[]
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


def paper_records(dataset: str | None = None) -> list[dict]:
    """The paper's rows as CSV records (all datasets, or one)."""
    return [{"dataset": d, "protocol": p, "features": f, "probe": "svm" if "L2-SVM" in f else "",
             "metric": m, "paper_value": v, "note": PAPER_NOTE}
            for d, p, f, m, v in PAPER_ROWS if dataset is None or d == dataset]
