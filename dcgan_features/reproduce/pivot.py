"""The results as one pivot: feature set x (probe, column), and the paper's DCGAN row where it compares.

The terminal (:func:`format_pivot`) and the report (``report.py``) show the same table:
a row per feature set (pixels, random D, trained D, and a block alone), a column per probe
and protocol column, ``mean +- ci95`` in each cell. The paper's DCGAN + L2-SVM figure is a
row of its own, in a column only where ours measured the paper's column
(:func:`~.paper.same_column`); a figure for a column we did not measure (another number of
labels, a ``--limit`` run) is listed apart, labelled with its own column.

>>> recs = [{"features": "trained D", "layers": "d1+d2", "probe": "svm", "protocol": "cifar10/all", "n_labels": 50000,
...          "metric": "accuracy", "mean": 80.0, "ci95": 0.8, "dim": 28672},
...         {"features": "trained D", "layers": "d1+d2", "probe": "svm", "protocol": "cifar10/10-per-class",
...          "n_labels": 100, "metric": "accuracy", "mean": 40.0, "ci95": 2.0, "dim": 28672}]
>>> print(format_pivot(pivot(recs, "cifar10")))
accuracy (%)              svm all  svm 10-per-class
trained D           80.00 +- 0.80     40.00 +- 2.00   (28672-d)
paper DCGAN+SVM             82.80                 -
paper, not this run's column: cifar10/400-per-class 73.80 +- 0.40 (DCGAN + L2-SVM, 4000 labels)
+-: ours, a 95% interval (1.96 x std over draws, or binomial for one test run); the paper's +- is printed without its definition (std or interval, over how many draws: not stated)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .paper import PAPER_LABELS, PM_DEFINITION, dcgan_figures, same_column

PAPER_ROW = "paper DCGAN+SVM"
OURS_PM = "ours, a 95% interval (1.96 x std over draws, or binomial for one test run)"


def row_name(r: dict) -> str:
    """A record's feature set, with the block when it is one block alone: ``trained D``, ``trained D d2``."""
    layers = str(r.get("layers") or "")
    one_block = r["features"] == "trained D" and layers and "+" not in layers
    return f"{r['features']} {layers}" if one_block else r["features"]


def column_of(r: dict) -> str:
    return str(r["protocol"]).split("/", 1)[1]


@dataclass
class Pivot:
    """Rows, columns and cells of the results table (cells are the records themselves)."""

    metric: str
    rows: list[str]
    columns: list[tuple[str, str]]  # (probe, column name)
    cells: dict[tuple[str, str, str], dict]
    dims: dict[str, object]
    paper: dict[tuple[str, str], tuple[float, float | None]] = field(default_factory=dict)  # in a column of ours
    apart: list[tuple[str, float, float | None]] = field(default_factory=list)  # (protocol column, value, +-)

    def gap(self, row: str, probe: str, column: str) -> float | None:
        """Ours - paper, for the trained D (all blocks) in a column that is the paper's."""
        ref, r = self.paper.get((probe, column)), self.cells.get((row, probe, column))
        if ref is None or r is None or row != "trained D":
            return None
        return float(r["mean"]) - ref[0]


def pivot(records: Sequence[dict], dataset: str | None = None) -> Pivot:
    """The pivot of ``records`` (ours only), with the paper's DCGAN figures of ``dataset``."""
    ours = [r for r in records if not str(r["features"]).startswith("paper:")]
    columns = list(dict.fromkeys((r["probe"], column_of(r)) for r in ours))
    cells = {(row_name(r), r["probe"], column_of(r)): r for r in ours}
    dims: dict[str, object] = {}
    for r in ours:
        dims.setdefault(row_name(r), r.get("dim"))
    metric = ours[0]["metric"] if ours else "accuracy"
    p = Pivot(metric, list(dims), columns, cells, dims)
    for protocol, (value, pm) in (dcgan_figures(dataset) if dataset else {}).items():
        col = protocol.split("/", 1)[1]
        measured = [r for r in ours if r["probe"] == "svm" and column_of(r) == col]
        if measured and all(same_column(r) for r in measured):
            p.paper[("svm", col)] = (value, pm)
        else:
            p.apart.append((protocol, value, pm))
    return p


def _cell(mean: float, pm: float | None) -> str:
    return f"{float(mean):.2f}" + ("" if pm is None else f" +- {float(pm):.2f}")


def format_pivot(p: Pivot) -> str:
    """The terminal's table: feature sets as rows, probe x column as columns, the paper's row last."""
    heads = [f"{probe} {col}" for probe, col in p.columns]
    width = max([len(h) for h in heads] + [15])
    name_w = max([len(n) for n in p.rows] + [len(PAPER_ROW) if p.paper else 0, 15])
    lines = [f"{p.metric + ' (%)':<{name_w}}" + "".join(f"{h:>{width + 2}}" for h in heads)]
    for name in p.rows:
        cells = []
        for probe, col in p.columns:
            r = p.cells.get((name, probe, col))
            cells.append("-" if r is None else _cell(r["mean"], r.get("ci95")))
        lines.append(f"{name:<{name_w}}" + "".join(f"{s:>{width + 2}}" for s in cells) + f"   ({p.dims[name]}-d)")
    if p.paper:
        cells = [_cell(*p.paper[c]) if c in p.paper else "-" for c in p.columns]
        lines.append(f"{PAPER_ROW:<{name_w}}" + "".join(f"{s:>{width + 2}}" for s in cells))
    for protocol, value, pm in p.apart:
        lines.append(f"paper, not this run's column: {protocol} {_cell(value, pm)} (DCGAN + L2-SVM, "
                     f"{PAPER_LABELS.get(protocol, '?')} labels)")
    if p.paper or p.apart:
        lines.append(f"+-: {OURS_PM}; {PM_DEFINITION}")
    return "\n".join(lines)
