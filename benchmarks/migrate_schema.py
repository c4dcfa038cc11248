"""Bring every CSV under results/ to the one provenance schema of ``benchmarks/provenance.py``.

Idempotent: a table already in the schema is rewritten unchanged. Run it after merging rows
written by an older script::

    python benchmarks/migrate_schema.py            # rewrites results/**/*.csv in place
    python benchmarks/migrate_schema.py --check    # exit 1 if any table is not in the schema

What it changes, and only that (measurement values are never touched):

- ``notes`` -> ``note``; ``peak_rss_gb`` -> ``peak_rss_gib`` (those figures were GiB already:
  ``ru_maxrss`` / 2**30); ``load_avg_1m`` -> ``load``;
- ``date``: ISO 8601. Times were written by machines whose clocks ran on UTC (this one's does),
  so ``2026-12-01 05:01`` becomes ``2026-12-01T05:01:00Z``; a bare date stays a date;
- ``device``: the machine in full, ``MODEL, N cores`` for a CPU, from what the row itself says
  (``AMD EPYC x2`` -> ``AMD EPYC, 2 cores``). The probe records' bare ``cpu`` / ``cuda:0`` are
  named from the row's date: 2026-11-23 rows were made on the AMD EPYC machine and its lent
  H100 80GB HBM3, 2026-12-01 rows on the Intel Xeon machine (results/README.md, "Machines");
  a later bare ``cpu`` row is named after the machine running the migration;
- ``kind``: ``paper`` for the paper's rows, else what the row says, else ``measured``;
- ``commit``: what the row's note states (``commit a988580``), else ``unknown``: never guessed.

Probe-record tables (accuracy.csv, quickstart.csv, reproduce's results.csv) keep ``device`` in
its DESIGN section 6 place among the record columns.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import PROVENANCE, REPO, cpu_name  # noqa: E402

RENAME = {"notes": "note", "peak_rss_gb": "peak_rss_gib", "load_avg_1m": "load"}
# the records' bare device, by the date the row was made (the only machines of those days)
RECORD_DEVICE = {("cpu", "2026-11-23"): "AMD EPYC, 2 cores",
                 ("cuda:0", "2026-11-23"): "NVIDIA H100 80GB HBM3 (cuda:0)",
                 ("cpu", "2026-12-01"): "Intel(R) Xeon(R) Processor, 2 cores",
                 ("cpu", "2026-12-04"): "Intel(R) Xeon(R) Processor, 2 cores"}


def iso_date(value: str) -> str:
    """``2026-12-01 05:01`` / ``2026-12-01T05:21:05`` -> ``...T..:..:..Z``; a bare date unchanged."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d)(:\d\d)?Z?", value.strip())
    if not m:
        return value.strip()
    return f"{m[1]}T{m[2]}{m[3] or ':00'}Z"


def full_device(value: str, date: str) -> str:
    v = value.strip()
    if (v, date[:10]) in RECORD_DEVICE:
        return RECORD_DEVICE[v, date[:10]]
    if v == "cpu" and date[:10] > "2026-12-01":  # a record made since by an older script, on this
        return cpu_name()  # machine: run the migration where the rows were made
    m = re.fullmatch(r"(.+?)(?: x(\d+)(?: \(torch threads \d+\))?| \((\d+) cores(?: visible)?\))(?:, \d+ GiB RAM)?", v)
    if m and not v.startswith(("NVIDIA", "8x NVIDIA")):
        return f"{m[1]}, {m[2] or m[3]} cores"
    if v == "AMD EPYC":  # train_speed.csv: the 2-core development machine of 2026-11-23
        return "AMD EPYC, 2 cores"
    return v


def migrate_row(r: dict) -> dict:
    out = {RENAME.get(k, k): v for k, v in r.items()}
    out["date"] = iso_date(out.get("date", ""))
    is_paper = str(out.get("features", "")).startswith("paper:")
    out["device"] = "" if is_paper else full_device(out.get("device", ""), out["date"])
    out["kind"] = "paper" if is_paper else (out.get("kind") or "measured")
    if not out.get("commit"):
        m = re.search(r"\bcommit ([0-9a-f]{7,40})\b", out.get("note", ""))
        out["commit"] = "" if is_paper else (m[1] if m else "unknown")
    for c in PROVENANCE:
        out.setdefault(c, "")
    return out


def migrate_text(text: str) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return text
    new = [migrate_row(r) for r in rows]
    first = [RENAME.get(c, c) for c in rows[0]]
    if {"protocol", "features", "probe"} <= set(first):  # a probe-records table: `device` keeps its
        columns = [c for c in first if c == "device" or c not in PROVENANCE]  # DESIGN section 6 place
    else:
        columns = [c for c in first if c not in PROVENANCE]
    columns += [c for c in PROVENANCE if c not in columns]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, columns, lineterminator="\r\n")
    w.writeheader()
    w.writerows(new)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table needs migrating")
    args = ap.parse_args(argv)
    stale = []
    for path in sorted((REPO / "results").rglob("*.csv")):
        with open(path, newline="") as f:
            old = f.read()
        new = migrate_text(old)
        if new != old:
            stale.append(path.relative_to(REPO))
            if not args.check:
                write_text_atomic(path, new)
    verb = "not in the schema" if args.check else "migrated"
    print("\n".join(f"{verb}: {p}" for p in stale) or "every table is in the schema")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
