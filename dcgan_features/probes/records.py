"""Probe records as the terminal table, CSV cells and files: no torch, so any script can format them.

A record is one dict per (features, protocol column, probe) as :func:`~dcgan_features.probes.protocols.run_protocol`
returns it; :data:`CSV_COLUMNS` is the fixed column order of every probes CSV (DESIGN.md section 6).
The ``probe`` command, the quickstart and ``benchmarks/accuracy.py`` all write through here.

>>> csv_value(None), csv_value(0.1 + 0.2), csv_value("svm"), csv_value([1e-5, 1e-4])
('', '0.3', 'svm', '1e-05;0.0001')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..core.atomic import check_csv_header, write_csv_atomic, write_text_atomic
from ..core.errors import UserError

CSV_COLUMNS = ("dataset", "trained_on", "protocol", "features", "architecture", "checkpoint", "layers", "dim",
               "probe", "C", "n_labels", "metric", "mean", "ci95", "n_runs", "fit_seconds", "device", "paper_value",
               "c_at_edge", "c_grid")


def format_table(records: Sequence[dict]) -> str:
    """The records as a fixed-width table for the terminal."""
    head = f"{'data':<14} {'trained on':<14} {'protocol':<26} {'probe':<7} {'C':>8} {'labels':>7} {'metric':<8} " \
           f"{'mean':>7} {'+-95%':>6} {'runs':>4} {'paper':>6} {'fit s':>8}"
    lines = [head, "-" * len(head)]
    for r in records:
        C = "-" if r["C"] is None else f"{r['C']:g}"
        paper = "-" if r["paper_value"] is None else f"{r['paper_value']:g}"
        lines.append(f"{r['dataset']:<14} {r.get('trained_on') or '-':<14} {r['protocol']:<26} {r['probe']:<7} "
                     f"{C:>8} {r['n_labels']:>7} {r['metric']:<8} {r['mean']:>7.2f} {r['ci95']:>6.2f} {r['n_runs']:>4} {paper:>6} {r['fit_seconds']:>8.1f}")
    return "\n".join(lines)


def csv_value(v) -> str:
    """A record value as a CSV cell: None empty, floats to 6 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):  # a C grid: 1e-05;0.0001;0.001
        return ";".join(csv_value(x) for x in v)
    return str(v)


def record_stem(r: dict) -> str:
    """``<features>__<protocol>__<probe>``: a feature file is its name plus 8 hex digits of the sha256
    of its absolute path (``features_path``, which :func:`.protocols.from_file` records), so two files
    of one name (``a/f.h5``, ``b/f.h5``) never share a record.

    >>> record_stem({"features": "px", "protocol": "digits-all", "probe": "knn"})
    'px__digits-all__knn'
    """
    import hashlib
    import os

    features = str(r["features"])
    where = r.get("features_path") or (features if os.path.isfile(features) else None)
    if where:
        digest = hashlib.sha256(os.path.abspath(where).encode()).hexdigest()[:8]
        features = f"{Path(features).name}-{digest}"
    return "__".join(str(v).replace("/", "-").replace(" ", "_") for v in (features, r["protocol"], r["probe"]))


def write_records(records: Sequence[dict], out_dir) -> list:
    """One JSON file per record and the rows appended to ``probes.csv``, all written atomically.

    A record's JSON is named ``<features>__<protocol>__<probe>.json`` (a rerun replaces it), the
    features named by file name and a hash of the file's absolute path (:func:`record_stem`).
    A ``probes.csv`` with columns of another tool is refused before anything is written.
    Returns the paths written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {str(out)!r}: {e.strerror}") from None
    check_csv_header(out / "probes.csv", CSV_COLUMNS)
    written = []
    for r in records:
        path = out / f"{record_stem(r)}.json"
        write_text_atomic(path, json.dumps(r, indent=1, default=str) + "\n")
        written.append(path)
    csv_path = out / "probes.csv"
    write_csv_atomic(csv_path, CSV_COLUMNS, records, append=True, value=csv_value)
    written.append(csv_path)
    return written
