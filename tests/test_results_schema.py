"""Every CSV under results/ is in the one provenance schema of benchmarks/provenance.py."""

import csv
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from provenance import KINDS, PROVENANCE  # noqa: E402

TABLES = sorted((REPO / "results").rglob("*.csv"))
ISO = re.compile(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\dZ)?$")


@pytest.mark.parametrize("path", TABLES, ids=lambda p: str(p.relative_to(REPO)))
def test_table_has_the_provenance_columns_and_values(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    assert set(PROVENANCE) <= set(columns), set(PROVENANCE) - set(columns)
    assert not {"notes", "peak_rss_gb", "load_avg_1m"} & set(columns)  # the old names
    for r in rows:
        assert r["kind"] in KINDS, r
        if r["kind"] == "paper":
            continue
        assert ISO.match(r["date"]), r["date"]
        assert r["commit"] and r["command"], r
        assert r["device"] and r["device"] not in ("cpu", "cuda", "cuda:0"), r["device"]  # the machine, in full
