"""Exclusive outputs: one process at a time writes a given feature file, run folder or table.

``with output_lock(path): ...`` holds an advisory ``flock`` on a small lock file beside
``path`` (``.NAME.lock``), or inside it for a folder (``folder=True``: ``PATH/.lock``),
for the whole ``with`` block. Take it before any work. A second process asking for the same
output gets :class:`OutputLocked`, one line naming the process that holds it. The kernel
drops the lock when its process dies, so a lock left by a killed process (``kill -9``, a
lost node) is recognised as stale and simply taken over; the file only records the holder's
pid and host for the message. The lock file is removed on release.

The lock file cannot be aimed elsewhere: it is opened with ``O_NOFOLLOW``, and a symbolic
link, FIFO, device, socket, hard link or a file holding anything but a pid record at the
lock path is refused in one line and left untouched (never truncated).

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "f.h5"
>>> with output_lock(out):
...     with output_lock(out):  # a second holder, even in the same process, is refused
...         pass  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
dcgan_features.core.locks.OutputLocked: ...f.h5 is in use by process ... on ...; wait for it to finish or choose another output
>>> with output_lock(out) as lock:  # released: free again
...     lock.name
'.f.h5.lock'
>>> lock.exists()
False
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
from pathlib import Path
from typing import Iterator

from .atomic import check_output_file, check_output_folder, file_kind
from .errors import UserError

__all__ = ["OutputLocked", "lock_path", "output_lock"]


class OutputLocked(UserError):
    """Another process is writing this output."""


def lock_path(path: str | os.PathLike, folder: bool = False) -> Path:
    """Where the lock of ``path`` lives: ``.NAME.lock`` beside a file, ``.lock`` in a folder."""
    path = Path(path)
    return path / ".lock" if folder else path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, folder: bool = False, parents: bool = False) -> Iterator[Path]:
    """Hold ``path`` exclusively for the ``with`` block; yield the lock file's path.

    Also the first check of the output: a file output must not be a folder and its folder
    must exist (or be created, with ``parents``) and be writable; a folder output
    (``folder=True``) must not be a file, and is created with its parents if missing.
    Folders created here are removed again on release if they are empty, so a refused or
    failed run leaves nothing behind.
    """
    path = Path(path)
    if folder:
        check_output_folder(path)
        created = _make_dirs(path)
    else:
        check_output_file(path, parents=parents)
        created = _make_dirs(path.parent if str(path.parent) else Path(".")) if parents else []
    lock = lock_path(path, folder)
    try:
        fd = _acquire(lock, path)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before unlocking: a waiter that locked the old inode sees it is gone
        os.close(fd)
        _remove_empty(created)


def _make_dirs(folder: Path) -> list[Path]:
    missing = []
    d = folder
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {str(folder)!r} ({e.strerror or type(e).__name__}); "
                        "choose a writable output") from None
    if not folder.is_dir():
        raise UserError(f"{str(folder)!r} is not a folder; choose another output")
    return missing  # deepest first


def _remove_empty(created: list[Path]) -> None:
    for d in created:
        try:
            d.rmdir()
        except OSError:
            return


# What a lock file of this tool holds: "PID HOST\n", nothing else (see _acquire).
_RECORD = re.compile(rb"\A\d+ \S+\n\Z")
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _acquire(lock: Path, path: Path) -> int:
    while True:
        fd = _open_lock(lock, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise OutputLocked(f"{path} is in use by {holder}; wait for it to finish or choose another "
                                   "output") from None
            raise UserError(f"cannot lock {str(lock)!r} ({e.strerror or type(e).__name__})") from None
        # A holder releasing just now unlinks the file before unlocking it: if the file we
        # locked is no longer the one at ``lock``, try again on the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        _check_ours(fd, lock)
    except BaseException:
        os.close(fd)
        raise
    try:  # only for the message a second process gets; a full disk must not stop the holder
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError:
        pass
    return fd


def _planted(lock: Path, what: str) -> UserError:
    return UserError(f"the lock file {str(lock)!r} is {what}, not a lock this tool wrote; it is left as it is: "
                     "remove it, or choose another output")


def _open_lock(lock: Path, path: Path) -> int:
    """Open (or create) the lock file without ever following a link or opening a device.

    A symbolic link, FIFO, device, socket or folder planted at the lock path is refused
    before it is opened for writing (O_NOFOLLOW closes the race between the check and the
    open), so the lock cannot be aimed at another file to truncate it.
    """
    try:
        st = os.lstat(lock)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UserError(f"cannot read the lock file {str(lock)!r} ({e.strerror or type(e).__name__})") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _planted(lock, file_kind(st.st_mode))
    try:
        fd = os.open(lock, _FLAGS, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link planted between the check and the open
            raise _planted(lock, "a symbolic link") from None
        raise UserError(f"cannot create the lock file {str(lock)!r} for {str(path)!r} "
                        f"({e.strerror or type(e).__name__}); choose a writable output") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _planted(lock, file_kind(st.st_mode))
    return fd


def _check_ours(fd: int, lock: Path) -> None:
    """Refuse a lock file this tool did not write: another name of a file (a hard link) or other content."""
    st = os.fstat(fd)
    if st.st_nlink > 1:
        raise _planted(lock, f"a file with {st.st_nlink} names (a hard link)")
    if st.st_size == 0:
        return
    head = os.pread(fd, 256, 0) if st.st_size <= 256 else b""
    if not _RECORD.match(head):
        raise _planted(lock, f"a file of {st.st_size} bytes that is not a pid record")


def _holder(fd: int) -> str:
    try:
        pid, host = os.pread(fd, 200, 0).decode().split()[:2]
        return f"process {int(pid)} on {host}"
    except (OSError, ValueError, UnicodeDecodeError):
        return "another process"
