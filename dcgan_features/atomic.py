"""Atomic file writes: nothing is ever half-written under its final name.

A writer gets a temporary path in the destination folder (same filesystem, so
``os.replace`` is atomic) and the file appears under its final name only once the
``with`` block exits cleanly. On any exception, including ``KeyboardInterrupt`` and a
full disk, the temporary file is removed.

>>> import json, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> with atomic_path(out) as tmp:
...     _ = tmp.write_text(json.dumps({"ok": 1}))
>>> json.loads(out.read_text())
{'ok': 1}
>>> oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_current_umask())
True
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from .errors import UserError


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Return ``folder`` as a Path, or raise UserError if it is missing or not writable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"output folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"output folder {str(folder)!r} is not writable")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` on success."""
    path = Path(path)
    check_writable_dir(path.parent if str(path.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600; a results file or checkpoint should get the mode any
        # ordinary file would (0666 less the umask), so collaborators can read it.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def write_csv_atomic(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping],
                     *, append: bool = False, value: Callable[[object], str] = _plain) -> None:
    """Dict rows as CSV under ``columns`` (header first), written atomically.

    With ``append`` the rows already in ``path`` are kept and the new ones follow; the file
    is still rewritten through a temp file, so a killed writer leaves the old table whole.
    Missing keys and None become empty cells; ``value`` formats the rest.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> write_csv_atomic(out, ["a", "b"], [{"a": 1}])
    >>> write_csv_atomic(out, ["a", "b"], [{"a": 2, "b": None}, {"b": "x"}], append=True)
    >>> out.read_text().splitlines()
    ['a,b', '1,', '2,', ',x']
    >>> write_csv_atomic(out, ["a", "b", "c"], [{"c": 3}], append=True)  # a new column: the old rows follow it
    >>> out.read_text().splitlines()
    ['a,b,c', '1,,', '2,,', ',x,', ',,3']
    """
    import csv
    import io

    path = Path(path)
    old = path.read_text() if append and path.exists() else ""
    if old and next(csv.reader(io.StringIO(old)), None) != list(columns):  # written before a column was added
        rows = [*csv.DictReader(io.StringIO(old)), *rows]
        old = ""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if not old:
        w.writerow(columns)
    for r in rows:
        w.writerow([value(r.get(k)) for k in columns])
    write_text_atomic(path, old + buf.getvalue())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + fsync + os.replace)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
