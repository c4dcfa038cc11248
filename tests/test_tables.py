"""benchmarks/tables.py: the committed tables of README.md and results/README.md are what the
CSVs render now, and a table follows its rows (a changed figure, a new row, a missing cell)."""

import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import tables  # noqa: E402


def test_committed_tables_are_what_the_csvs_render(capsys):
    code = tables.main(["--check"])
    assert code == 0, f"stale tables (run `python benchmarks/tables.py`):\n{capsys.readouterr().out}"


def test_every_marker_names_a_table_and_every_table_is_shown():
    shown = [m[2] for doc in tables.DOCS for m in tables.MARK.finditer((REPO / doc).read_text())]
    assert sorted(set(shown)) == sorted(tables.TABLES)


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def record(features, protocol, probe, mean, ci95, n_runs, layers="d1+d2", arch="dcgan32", device="cpu model, 2 cores"):
    return {"dataset": "digits", "protocol": protocol, "features": features, "architecture": arch,
            "layers": layers, "dim": "64", "probe": probe, "n_labels": "1297" if protocol.endswith("all") else "200",
            "mean": mean, "ci95": ci95, "n_runs": n_runs, "kind": "measured", "device": device}


def test_pivot_renders_the_rows_with_a_dash_for_a_missing_cell(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    write(tmp_path / "r.csv", [
        record("trained D", "digits/20-per-class", "svm", "95.316", "1.877", "10"),
        record("pixels", "digits/all", "svm", "96.8", "1.5", "1", layers="pixels", arch=""),
        record("trained D", "digits/all", "svm", "98.8", "0.95", "1"),
        record("trained D", "digits/all", "logreg", "97.75", "1.1", "1", layers="d2"),
    ])
    got = tables.Pivot("r.csv", lambda r: True).render()
    # written by hand from the rows above: pixels first, all blocks before one block, all labels first
    assert got == (
        "| features | dim | digits, all 1297 labels, SVM | digits, all 1297 labels, logistic"
        " | digits, 20 labels/class, SVM |\n"
        "|---|---|---|---|---|\n"
        "| raw pixels | 64 | 96.80 | - | - |\n"
        "| trained D (`dcgan32`), all blocks | 64 | 98.80 | - | 95.32 +- 1.88 |\n"
        "| trained D (`dcgan32`), d2 alone | 64 | - | 97.75 | - |\n")


def test_a_changed_row_makes_the_committed_table_stale(tmp_path, monkeypatch):
    (tmp_path / "op_count.csv").write_bytes((tables.RESULTS / "op_count.csv").read_bytes())
    text = (REPO / "results" / "README.md").read_text()
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "op_count.csv", newline="")))
    rows[0]["aten_ops"] = "431"
    write(tmp_path / "op_count.csv", rows)
    block = text.split("<!-- table:op-count -->\n", 1)[1].split("<!-- /table:op-count -->", 1)[0]
    assert tables.render("op-count") != block and "| 431 |" in tables.render("op-count")


def test_unknown_table_name_is_an_error():
    with pytest.raises(SystemExit, match="no table 'nope'"):
        tables.rewrite("<!-- table:nope -->\n| x |\n<!-- /table:nope -->\n", tables.render)
