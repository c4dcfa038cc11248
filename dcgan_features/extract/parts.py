"""The part files of a ``torchrun`` extraction: their names, and refusing ones another world size left.

Rank ``r`` of ``W`` writes ``<out>.part<r>of<W>.partial`` (see :mod:`dcgan_features.extract.distributed`).
A single-process run and a run with another world size must not start over such files
silently: they hold finished work, and their rows belong to shares of another size.

>>> part_path(Path("runs/f.h5"), 1, 8).name
'f.h5.part1of8'
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import FeatureFileError


def part_path(out: Path, rank: int, world: int) -> Path:
    """The path a rank's :class:`FeatureWriter` is given; it writes ``<that>.partial``."""
    return out.with_name(f"{out.name}.part{rank}of{world}")


def _parts_on_disk(out: Path) -> dict[int, list[Path]]:
    """Part files of ``out`` in its folder, by the world size that wrote them."""
    found: dict[int, list[Path]] = {}
    pattern = re.compile(re.escape(out.name) + r"\.part(\d+)of(\d+)\.partial$")
    folder = out.parent if str(out.parent) else Path(".")
    for p in folder.glob(f"{out.name}.part*of*.partial"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), []).append(p)
    return found


def check_no_parts(out: Path, world: int, overwrite: bool) -> None:
    """Refuse to start over part files another world size left (``--overwrite`` deletes them)."""
    for w, paths in sorted(_parts_on_disk(Path(out)).items()):
        if w == world:
            continue
        if overwrite:
            for p in paths:
                p.unlink(missing_ok=True)
            continue
        raise FeatureFileError(f"an unfinished {w}-rank torchrun extraction of {str(out)!r} left "
                               f"{len(paths)} part file(s) such as {str(sorted(paths)[0])!r}; repeat its command "
                               f"with --nproc-per-node {w} to finish it, or pass --overwrite to discard it")
