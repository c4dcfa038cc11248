"""Stages that remember what they were made from: skip when unchanged, resume when interrupted.

A :class:`Stage` is a name, the settings that determine its output (upstream stages enter
as their fingerprints, so a change flows downstream), the files it writes and an action.
Its record, ``<out>/stages/<name>.json``, is written atomically: ``running`` before the
action starts, ``complete`` (with the seconds it took) once its outputs are whole.
:func:`plan` decides for each stage:

- ``reuse``: a complete record with the same fingerprint, outputs present, and every
  upstream stage reused too;
- ``resume``: a ``running`` record with the same fingerprint (the run was killed): the
  action continues the work (``train --resume``, a partial feature file);
- ``compute``: anything else, with the reason (new, which settings changed, an upstream
  stage recomputed, an output missing).

>>> import tempfile
>>> book = StageBook(tempfile.mkdtemp())
>>> s = Stage("a", {"x": 1}, outputs=(), action=lambda stage, how: {"done": how})
>>> [d.action for d in plan([s], book)]
['compute']
>>> _ = execute([s], book)
>>> [d.action for d in plan([s], book)], [d.action for d in plan([Stage("a", {"x": 2}, (), s.action)], book)]
(['reuse'], ['compute'])
>>> plan([Stage("a", {"x": 2}, (), s.action)], book)[0].reason
'changed: x'
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..core.atomic import write_text_atomic


def fingerprint(settings: dict) -> str:
    """16 hex digits of the sha256 of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One step of the chain; ``action(stage, "compute" | "resume")`` returns facts for its record."""

    name: str
    settings: dict
    outputs: Sequence[str]  # paths relative to the run folder (absolute ones are outside it)
    action: Callable[["Stage", str], dict]
    after: Sequence[str] = ()  # upstream stage names
    command: str = ""  # the equivalent single command, for --dry-run and the report
    title: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)


@dataclass
class Decision:
    stage: Stage
    action: str  # reuse | resume | compute
    reason: str = ""


class StageBook:
    """The ``stages/`` folder of a run: one JSON record per stage."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out / "stages"

    def path(self, name: str) -> Path:
        return self.folder / f"{name.replace(':', '_')}.json"

    def read(self, name: str) -> dict | None:
        try:
            rec = json.loads(self.path(name).read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and "fingerprint" in rec else None

    def write(self, name: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path(name), json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")

    def outputs_present(self, stage: Stage) -> bool:
        return all((self.out / p).exists() for p in stage.outputs)


def _changed(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]


def plan(stages: Sequence[Stage], book: StageBook) -> list[Decision]:
    """What :func:`execute` would do with each stage, in order."""
    decided: dict[str, Decision] = {}
    for s in stages:
        rec = book.read(s.name)
        ups = [u for u in s.after if decided[u].action != "reuse"]
        same = rec is not None and rec["fingerprint"] == s.fingerprint
        if same and not ups and rec.get("status") == "complete" and book.outputs_present(s):
            d = Decision(s, "reuse", f"complete, {rec.get('seconds', 0):.1f} s")
        elif same and not ups and rec.get("status") == "running":
            d = Decision(s, "resume", "interrupted")
        elif rec is None:
            d = Decision(s, "compute", "new")
        elif not same:
            d = Decision(s, "compute", "changed: " + ", ".join(_changed(rec.get("settings", {}), s.settings)))
        elif ups:
            d = Decision(s, "compute", "upstream recomputed: " + ", ".join(ups))
        else:
            d = Decision(s, "compute", "output missing")
        decided[s.name] = d
    return [decided[s.name] for s in stages]


def execute(stages: Sequence[Stage], book: StageBook, log: Callable[[str], None] = lambda m: None) -> list[dict]:
    """Run the plan; returns every stage's record (reused ones as they were), with ``this_run``
    (reused, computed or resumed) added."""
    records = []
    for i, d in enumerate(plan(stages, book), start=1):
        s = d.stage
        if d.action == "reuse":
            log(f"[{i}/{len(stages)}] {s.name}: reuse ({d.reason})")
            records.append({**book.read(s.name), "this_run": "reused"})
            continue
        log(f"[{i}/{len(stages)}] {s.name}: {d.action} ({d.reason})")
        rec = {"stage": s.name, "fingerprint": s.fingerprint, "settings": s.settings, "status": "running",
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": s.command}
        old = book.read(s.name)
        # a resumed stage keeps counting from where it was killed
        spent = float(old.get("seconds", 0.0)) if d.action == "resume" and old else 0.0
        rec["seconds"] = spent
        book.write(s.name, rec)
        t0 = time.perf_counter()
        info = s.action(s, d.action) or {}
        rec.update(info=info, status="complete", seconds=spent + time.perf_counter() - t0,
                   finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        book.write(s.name, rec)
        records.append({**rec, "this_run": {"compute": "computed", "resume": "resumed"}[d.action]})
    return records
