"""The report's comparisons: C in numeric order, a gap only where our column is the paper's, the +- defined."""

import re
from types import SimpleNamespace

from dcgan_features.reproduce import report
from dcgan_features.reproduce.pivot import format_pivot, pivot


def rec(features, protocol, n_labels, mean, probe="svm", layers="d1+d2", C=0.01, val_scores=None):
    return {"features": features, "layers": layers, "probe": probe, "protocol": protocol, "n_labels": n_labels,
            "metric": "accuracy", "mean": mean, "ci95": 0.5, "dim": 100, "C": C, "val_scores": val_scores or {}}


def test_C_columns_are_in_numeric_order_after_a_downward_widening():
    # the grid widened downwards: the scores arrive as 0.001, 0.01, 0.1, then 0.0001, then 1
    scores = {"0.001": 90.0, "0.01": 91.0, "0.1": 89.0, "0.0001": 80.0, "1": 70.0}
    html = report._c_section(None, [rec("trained D", "digits/all", 1297, 95.0, val_scores=scores)])
    heads = re.findall(r"<th>C=([^<]+)</th>", html)
    assert heads == ["0.0001", "0.001", "0.01", "0.1", "1"]


def test_gap_only_where_ours_is_the_papers_column():
    same = [rec("trained D", "cifar10/all", 50000, 80.0), rec("trained D", "cifar10/400-per-class", 4000, 70.0)]
    p = pivot(same, "cifar10")
    assert p.gap("trained D", "svm", "all") == 80.0 - 82.8 and round(p.gap("trained D", "svm", "400-per-class"), 6) == -3.8
    assert p.paper[("svm", "400-per-class")] == (73.8, 0.4) and not p.apart
    other = [rec("trained D", "cifar10/all", 2000, 80.0), rec("trained D", "cifar10/10-per-class", 100, 40.0)]
    q = pivot(other, "cifar10")  # a --limit run and another number of labels: no gap, the paper's figures apart
    assert q.paper == {} and q.gap("trained D", "svm", "all") is None
    assert [a[0] for a in q.apart] == ["cifar10/all", "cifar10/400-per-class"]
    text = format_pivot(q)
    assert "paper, not this run's column: cifar10/400-per-class 73.80 +- 0.40" in text
    assert "definition" in text and "not stated" in text


def test_report_table_is_the_terminal_pivot_with_the_paper_row():
    rows = [rec("pixels", "cifar10/all", 50000, 60.0, layers="pixels"), rec("trained D", "cifar10/all", 50000, 80.0),
            rec("trained D", "cifar10/all", 50000, 81.0, probe="logreg")]
    html = report._results_section(SimpleNamespace(cfg=SimpleNamespace(protocol="cifar10")), rows)
    first = html.split("</table>")[0]
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", first) == ["pixels", "trained D", "paper DCGAN+SVM"]
    assert "-2.80 vs paper" in first and first.count("vs paper") == 1  # the trained D's svm cell alone
    assert "not stated" in html
