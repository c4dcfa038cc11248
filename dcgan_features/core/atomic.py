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
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from .errors import UserError, WriteError


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Return ``folder`` as a Path, or raise UserError if it is missing or not writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{str(folder)!r} is a file, not a folder; choose another output")
    if not folder.is_dir():
        raise UserError(f"output folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"output folder {str(folder)!r} is not writable")
    return folder


def file_kind(mode: int) -> str:
    """What a file mode names, for the messages.

    >>> file_kind(stat.S_IFIFO)
    'a FIFO'
    """
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike, what: str = "output") -> None:
    """Refuse an existing ``path`` that is (or links to) a device, FIFO or socket.

    A write to one would not stay a file: ``os.replace`` would swap out a device node, and
    reading a FIFO blocks. A link to a regular file is fine (the link is replaced, not its target).
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # missing, or a dangling link: the write replaces the link itself
    except OSError as e:
        raise UserError(f"cannot inspect {what} {str(path)!r} ({e.strerror or type(e).__name__})") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        link = " (through a symbolic link)" if os.path.islink(path) else ""
        raise UserError(f"{what} {str(path)!r} is {file_kind(st.st_mode)}{link}, not a regular file; "
                        "choose another output")


def _names_folder(given: str) -> bool:
    """Whether a path string ends in a separator (``out/``): it then names a folder, not a file."""
    return given.endswith(os.sep) or (os.altsep is not None and given.endswith(os.altsep))


def check_output_file(path: str | os.PathLike, parents: bool = False) -> Path:
    """Fail before the work: ``path`` names a regular file, not a folder, in a writable folder.

    With ``parents`` the folder may be missing if the nearest folder above it is writable
    (the writer creates the rest). A path ending in a separator names a folder and is refused.

    >>> check_output_file("")
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: output path '' names no file; give a file name
    >>> check_output_file("runs/")
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: output path 'runs/' ends with a separator, so it names a folder; give a file name such as 'runs/NAME'
    """
    given, path = os.fspath(path), Path(path)
    if not given.strip() or path.name in ("", ".", ".."):
        raise UserError(f"output path {given!r} names no file; give a file name")
    if _names_folder(given):
        raise UserError(f"output path {given!r} ends with a separator, so it names a folder; give a file name "
                        f"such as {given + 'NAME'!r}")
    if path.is_dir():
        raise UserError(f"output {str(path)!r} is a folder; give a file name")
    check_regular(path)
    parent = path.parent if str(path.parent) else Path(".")
    check_writable_dir(_nearest_existing(parent) if parents else parent)
    return path


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Fail before the work: ``folder`` is a writable folder, or can be created as one.

    >>> check_output_folder("")
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: output folder '' is empty; give a folder name (. for this folder)
    """
    if not os.fspath(folder).strip():
        raise UserError(f"output folder {os.fspath(folder)!r} is empty; give a folder name (. for this folder)")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output folder {str(folder)!r} is a file; choose another output")
    check_writable_dir(_nearest_existing(folder))
    return folder


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_error(path: str | os.PathLike, e: BaseException) -> WriteError:
    """The one-line error for a failed write of ``path``: disk full (with the space left) or why."""
    path = Path(path)
    try:
        free = shutil.disk_usage(_nearest_existing(path.parent if str(path.parent) else Path("."))).free
    except OSError:
        free = None
    code = getattr(e, "errno", None)
    # torch.save reports a short write as a RuntimeError without an errno
    full = code in (errno.ENOSPC, errno.EDQUOT) or (code is None and free is not None and free < (1 << 20))
    if full:
        left = f"; {free / 2**20:.1f} MiB free there" if free is not None else ""
        return WriteError(f"disk full while writing {str(path)!r}{left}: free space and run the command again",
                          disk_full=True)
    why = getattr(e, "strerror", None) or (str(e).splitlines()[0][:160] if str(e) else type(e).__name__)
    return WriteError(f"cannot write {str(path)!r} ({why}); choose a writable output")


# torch.save reports a failed write as a RuntimeError from its zip writer
_TORCH_WRITE_FAILURE = ("inline_container", "PytorchStreamWriter", "file write failed")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` on success.

    A write that fails for lack of space or permission (``OSError``, or torch.save's
    ``RuntimeError`` for a short write) becomes a one-line :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    check_output_file(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600; a results file or checkpoint should get the mode any
        # ordinary file would (0666 less the umask), so collaborators can read it.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    except RuntimeError as e:
        tmp.unlink(missing_ok=True)
        if any(s in str(e) for s in _TORCH_WRITE_FAILURE):
            raise write_error(path, e) from None
        raise
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
    old = check_csv_header(path, columns) if append else ""
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


def check_csv_header(path: str | os.PathLike, columns: Sequence[str]) -> str:
    """The text of a table this tool may append to (empty when there is none yet).

    A table whose header names a column that is not one of ``columns`` (another tool's, or
    edited by hand), or that is not text, is refused: appending would rewrite it under our
    header and lose its rows. An older header of ours (a subset of ``columns``) is fine.

    >>> import tempfile, pathlib
    >>> t = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = t.write_text("name,score\\nme,1\\n")
    >>> check_csv_header(t, ["a", "b"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: ...t.csv' has columns this tool does not write (name, score); it is left as it is: move it or choose another output
    """
    import csv
    import io

    path = Path(path)
    if not path.exists():
        return ""
    check_regular(path, "table")
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{str(path)!r} is not a readable text table ({type(e).__name__}); it is left as it is: "
                        "move it or choose another output") from None
    header = next(csv.reader(io.StringIO(text)), None) if text.strip() else []
    foreign = [c for c in (header or []) if c not in columns]
    if foreign or (text.strip() and not header):
        raise UserError(f"{str(path)!r} has columns this tool does not write ({', '.join(foreign)}); it is left "
                        "as it is: move it or choose another output")
    return text


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + fsync + os.replace)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
