"""Running a chain: refuse a foreign ``--out``, execute the stages, write ``results.csv`` and the report.

>>> print(format_summary([{"features": "pixels", "layers": "pixels", "probe": "svm", "protocol": "d/all",
...                        "metric": "accuracy", "mean": 90.0, "ci95": 1.5, "dim": 3072}]))
accuracy (%)             svm all
pixels             90.00 +- 1.50   (3072-d)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

from ..core.errors import UserError
from .chain import Chain
from .config import ReproduceConfig
from .pivot import format_pivot, pivot, row_name  # noqa: F401 - row_name: this module's API before the pivot
from .stages import execute

# after CSV_COLUMNS, as in results/accuracy.csv: benchmarks/provenance.py's columns (``device`` is
# a record column; ``load`` stays empty: a run spans hours, report.html has each stage's time)
EXTRA_COLUMNS = ("kind", "command", "commit", "load", "date", "note")


def source_commit() -> str:
    """The git commit of this package's checkout (``+dirty`` if changed), or ``unknown`` outside one."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True,  # noqa: E731
                                        check=True, timeout=10).stdout.strip()
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "-uno") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def format_summary(records: Sequence[dict], dataset: str | None = None) -> str:
    """Feature sets as rows, probe x protocol column as columns: ``mean +- ci95`` in percent, and the
    paper's DCGAN row for ``dataset`` where it compares (:mod:`.pivot`, the report's table too)."""
    return format_pivot(pivot(records, dataset))


def results_rows(chain: Chain) -> list[dict]:
    """Our rows (stage order) and then the paper's rows for the protocol."""
    from .paper import paper_records

    rows = [dict(r) for r in chain.records() + paper_records(chain.cfg.protocol)]
    commit = source_commit()
    for r in rows:  # benchmarks/provenance.py's names; records of runs made before it say "notes"
        r.setdefault("note", r.pop("notes", ""))
        r["kind"] = "paper" if str(r["features"]).startswith("paper:") else "measured"
        r.setdefault("commit", "" if r["kind"] == "paper" else commit)
    return rows


def write_results(chain: Chain) -> Path:
    from ..core.atomic import write_csv_atomic
    from ..probes.records import CSV_COLUMNS, csv_value

    path = chain.out / "results.csv"
    write_csv_atomic(path, CSV_COLUMNS + EXTRA_COLUMNS, results_rows(chain), value=csv_value)
    return path


def check_out(cfg: ReproduceConfig) -> None:
    """Refuse an --out that holds anything but a reproduce run of this protocol."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {cfg.out!r} is a file; choose a folder")
    if not out.is_dir() or not any(p.name != ".lock" for p in out.iterdir()):  # .lock: output_lock's file
        return
    marker = out / "reproduce.json"
    try:
        made = json.loads(marker.read_text())
    except (OSError, ValueError):
        raise UserError(f"--out {cfg.out!r} holds files that are not a reproduce run; choose a new or empty "
                        f"folder") from None
    if made.get("protocol") != cfg.protocol:
        raise UserError(f"--out {cfg.out!r} holds a `reproduce {made.get('protocol')}` run, not {cfg.protocol}; "
                        f"choose another --out (or rerun `reproduce {made.get('protocol')}` there)")


def run(cfg: ReproduceConfig, log: Callable[[str], None] = lambda m: None) -> dict:
    """Run (or finish) the chain in ``cfg.out``; returns the paths written and the stage records.

    The run folder is this process's alone while it runs (a second ``reproduce`` into it is
    refused in one line), and a foreign folder is refused before anything is written.
    """
    from ..core.atomic import check_output_folder
    from ..core.locks import output_lock

    check_output_folder(cfg.out)
    check_out(cfg)
    chain = Chain(cfg, log)  # every setting and the model source are checked here, before any work
    check_inputs(chain)
    with output_lock(cfg.out, folder=True):
        return _run(chain)


def check_inputs(chain: Chain) -> None:
    """Refuse, in one line and before any work, a run whose stages to compute lack their data on disk."""
    from ..core.errors import DatasetError

    absent = chain.missing_inputs()
    for d in chain.plan():
        if d.action != "reuse" and d.stage.name in absent:
            raise DatasetError(absent[d.stage.name])


def _run(chain: Chain) -> dict:
    from .. import __version__
    from ..core.atomic import write_text_atomic
    from .report import write_report

    cfg = chain.cfg
    marker = chain.out / "reproduce.json"
    if not marker.is_file():
        write_text_atomic(marker, json.dumps({"protocol": cfg.protocol, "package_version": __version__,
                                              "created": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
    stage_records = execute(chain.stages(), chain.book, chain.log)
    csv_path = write_results(chain)
    report = write_report(chain, stage_records, results_rows(chain))
    return {"results": csv_path, "report": report, "stages": stage_records, "chain": chain}


def dry_run(cfg: ReproduceConfig) -> str:
    """The stages, whether each would be reused, resumed or computed, and the equivalent commands."""
    check_out(cfg)
    chain = Chain(cfg)
    lines = [f"reproduce {cfg.protocol} in {cfg.out} (model: {chain.source.kind}, {chain.model['arch']} width "
             f"{chain.model['width']}, trained on {chain.model['trained_on']})"]
    absent = chain.missing_inputs()
    blocked: set[str] = set()
    for i, d in enumerate(chain.plan(), start=1):
        why = absent.get(d.stage.name) if d.action != "reuse" else None
        waits = [a for a in d.stage.after if a in blocked]
        if why or waits:
            blocked.add(d.stage.name)
            action, reason = "blocked", (f"missing input: {why}" if why else f"waits for {', '.join(waits)}")
        else:
            action, reason = d.action, d.reason
        lines.append(f"{i}. {d.stage.name:<16} {action:<8} ({reason}) {d.stage.title}")
        lines.append(f"     {d.stage.command}")
    lines.append(f"then: {Path(cfg.out) / 'results.csv'} and {Path(cfg.out) / 'report.html'} from the stage records")
    if blocked:
        lines.append(f"{len(blocked)} stage(s) cannot run until their input is there: {', '.join(sorted(blocked))}")
    return "\n".join(lines)
