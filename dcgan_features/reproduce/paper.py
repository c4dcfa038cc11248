"""The paper's own figures (Radford, Metz & Chintala 2015) and other benchmarks' published anchors, quoted,
never measured here.

Table 1 (CIFAR-10, accuracy %, features of a DCGAN trained on ImageNet-1k, an L2-SVM on
all 50000 training labels and on 400 per class) and Table 2 (SVHN, 1000 labels, test error
%). Rows carry ``features`` starting with ``paper:`` and the number in ``paper_value`` only,
so no table can mistake them for ours.

A figure of ours is compared with the paper's (a gap) only when it measured the paper's
column: the same column and the same number of labels (:func:`same_column`); otherwise
the paper's figure is shown apart, labelled with its own column.

Table 1's "Accuracy (400 per class)" column gives a +- after each figure (DCGAN: 73.8% +-
0.4). What it is is not stated: neither the table's caption ("CIFAR-10 classification
results using our pre-trained model. Our DCGAN is not pretrained on CIFAR-10, but on
Imagenet-1k, and the features are used to classify CIFAR-10 images.") nor section 5.1 says
whether it is a standard deviation or an interval, nor over how many draws. Ours is 1.96 x
std over draws, so no width is compared with it (:data:`PAPER_PM`, :func:`departures`);
:data:`PM_DEFINITION` says so wherever the +- is shown.

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
PM_NOTE = ("its +- {pm:g} has no stated definition (a std or an interval, over how many draws: Table 1's caption and "
           "section 5.1 say neither); our +-95% is 1.96 x std over draws, so the widths are not compared")
# The paper's preprocessing where ours differs by the data itself, said beside every result trained on it
IMAGENET_NOTE = ("the paper trains on ImageNet-1k as \"32x32 min-resized center crops\"; Downsampled ImageNet "
                 "(imagenet32, imagenet64) resizes each whole image to S x S, squashing its aspect ratio (no crop); "
                 "the paper's route is --train-dataset folder over the original JPEG folders")
# Anchors of the other benchmarks, each quoted from its own paper (dataset, protocol, features, metric,
# value, source). STL-10's are means over its 10 folds, trained on its unlabeled split.
ANCHOR_ROWS = [
    ("stl10", "stl10/10-folds", "paper: 1 Layer K-means (triangle, 1600 features)", "accuracy", 51.5,
     "Coates, Lee & Ng 2011, An Analysis of Single-Layer Networks in Unsupervised Feature Learning (AISTATS), "
     "STL-10 table: 51.5 +- 1.7 over the folds"),
    ("stl10", "stl10/10-folds", "paper: Exemplar CNN (64c5-128c5-256c5-512f)", "accuracy", 72.8,
     "Dosovitskiy, Springenberg, Riedmiller & Brox 2014, Discriminative Unsupervised Feature Learning with "
     "Convolutional Neural Networks (NIPS), Table 1: 72.8 +- 0.4 over the folds"),
]


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
    """The paper's rows and the other benchmarks' published anchors as CSV records (all datasets, or one).

    >>> [r["paper_value"] for r in paper_records("stl10")]
    [51.5, 72.8]
    """
    rows = [(d, p, f, m, v, PAPER_NOTE) for d, p, f, m, v in PAPER_ROWS] + ANCHOR_ROWS
    return [{"dataset": d, "protocol": p, "features": f, "probe": "svm" if "L2-SVM" in f else "",
             "metric": m, "paper_value": v, "n_labels": PAPER_LABELS.get(p),
             "note": note + (f"; {PM_NOTE.format(pm=PAPER_PM[p, f])}" if (p, f) in PAPER_PM else "")}
            for d, p, f, m, v, note in rows if dataset is None or d == dataset]


def departures(dataset: str, trained_on: str | None) -> list[str]:
    """What stands between a run's figures and the paper's, in words, for a report.

    >>> departures("cifar10", "imagenet32")[1].startswith("the paper trains on ImageNet-1k")
    True
    >>> departures("digits", "digits")
    []
    """
    out = [f"Table 1's {p.split('/')[1]} {f[len('paper: '):]} figure: {PM_NOTE.format(pm=pm)}"
           for (p, f), pm in PAPER_PM.items() if p.startswith(f"{dataset}/")]
    if str(trained_on or "").startswith("imagenet"):
        out.append(IMAGENET_NOTE)
    return out
