"""One provenance schema for every CSV in results/, and rows that replace only their own.

Every results row carries, after its own measurement columns:

- ``kind``: ``measured``, ``predicted`` (from a model fitted to measured rows) or ``paper``;
- ``command``: runnable as written from the repo root;
- ``commit``: the short git commit of the code that measured it (``+dirty`` when uncommitted);
- ``device``: the full CPU or GPU model and the core count;
- ``load``: the 1-minute load average at the start, for CPU rows (empty on a GPU row);
- ``date``: ISO 8601 UTC;
- ``note``.

Memory is ``peak_rss_gib`` (GiB). :func:`upsert` writes rows under a key: a rerun replaces the
rows with its own key values, never another measurement's.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
>>> upsert(out, [{"case": "a", "s": 1}, {"case": "b", "s": 2}], key=("case",))
>>> upsert(out, [{"case": "a", "s": 3}], key=("case",))
>>> [line.split(",")[:2] for line in out.read_text().splitlines()]
[['case', 's'], ['b', '2'], ['a', '3']]
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = ("kind", "command", "commit", "device", "load", "date", "note")
KINDS = ("measured", "predicted", "paper")


def commit() -> str:
    """Short commit of the working tree, ``+dirty`` when it has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    """The CPU model and the cores this process may use, e.g. ``Intel(R) Xeon(R) Processor, 2 cores``."""
    model = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def device_label(device: str = "cpu") -> str:
    """``cpu_name()`` for a CPU row; the GPU model, count and the host CPU for a CUDA row."""
    if str(device).startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()} (host: {cpu_name()})"
    return cpu_name()


def load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def this_command(argv: Sequence[str] | None = None) -> str:
    """The command line that ran, as typed from the repo root (``python benchmarks/x.py ...``)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *argv[1:]])


def provenance(kind: str = "measured", device: str = "cpu", note: str = "", command: str | None = None) -> dict:
    """The provenance columns of one row measured now, by this process."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {KINDS}")
    return {"kind": kind, "command": command if command is not None else this_command(), "commit": commit(),
            "device": device_label(device), "load": "" if str(device).startswith("cuda") else load_average(),
            "date": now(), "note": note}


def read_rows(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def upsert(path: str | os.PathLike, rows: Iterable[Mapping], key: Sequence[str]) -> None:
    """Write ``rows`` into the CSV at ``path``, replacing the old rows with the same ``key`` values.

    Columns are the union of the old and new ones in first-seen order, with the provenance
    columns last; an existing table keeps its own order and gains new columns at the end. Written through a temp file and ``os.replace``: a killed writer leaves the
    old table whole.
    """
    import tempfile

    rows = [dict(r) for r in rows]
    for r in rows:
        missing = [k for k in key if k not in r]
        if missing:
            raise ValueError(f"row lacks its key column(s) {missing}")
    ident = lambda r: tuple(str(r.get(k, "")) for k in key)  # noqa: E731
    new_keys = {ident(r) for r in rows}
    old = read_rows(path)
    kept = [r for r in old if ident(r) not in new_keys]
    columns: list[str] = list(old[0]) if old else []  # an existing table keeps its column order
    for r in kept + rows:
        columns += [c for c in r if c not in columns and c not in PROVENANCE]
    columns += [c for c in PROVENANCE if c not in columns and any(c in r for r in kept + rows)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            for r in kept + rows:
                w.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
