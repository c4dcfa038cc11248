"""A restricted unpickler for dataset pickles: loading one never executes code from it.

Some datasets are pickles by their format (CIFAR-10's python batches, Downsampled
ImageNet's ``train_data_batch_N``). A plain ``pickle.load`` calls whatever callable the
file names, so a crafted batch could run anything. :func:`load` resolves only the globals
those files contain -- numpy's array and scalar reconstructors, ``numpy.ndarray``,
``numpy.dtype`` and ``_codecs.encode`` for latin-1 bytes -- and raises
:class:`ForbiddenPickleError` (a :class:`~dcgan_features.core.errors.UserError`, so one line on
the command line) naming the file and the global for anything else. Dicts, lists, tuples,
ints, floats, bytes and strings need no globals at all.

Pickles written by numpy 1.x (``numpy.core.multiarray``) and 2.x (``numpy._core``), with
protocols 0 to 5, and Python 2's (``encoding="bytes"`` or ``"latin1"``) all load.

>>> import io, pickle, numpy as np
>>> batch = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [0, 1]}
>>> back = load(io.BytesIO(pickle.dumps(batch, protocol=2)))
>>> back[b"data"].tolist(), back[b"labels"]
([[0, 1, 2], [3, 4, 5]], [0, 1])
>>> class Payload:
...     def __reduce__(self):
...         return (print, ("this never prints",))
>>> load(io.BytesIO(pickle.dumps(Payload())))
Traceback (most recent call last):
...
dcgan_features.data.safe_pickle.ForbiddenPickleError: <stream>: refusing to unpickle builtins.print: a dataset pickle holds only dicts, lists, numbers, bytes, strings and numpy arrays
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from ..core.errors import UserError

__all__ = ["ForbiddenPickleError", "UnreadablePickleError", "load", "loads", "plain_array"]


class ForbiddenPickleError(UserError):
    """The pickle names a global that a data file never needs (it may be a payload)."""


class UnreadablePickleError(UserError):
    """The file is not a complete, well-formed pickle (truncated, corrupt, or not a pickle).

    ``reason`` is the short cause (the exception type inside the unpickler), for callers
    that phrase their own message.
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


def _numpy_attr(*candidates: str) -> Callable:
    """The first of ``module:name`` candidates that exists (numpy 2 moved core to _core)."""
    import importlib

    for c in candidates:
        module, name = c.split(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {candidates} found in this numpy")  # pragma: no cover


_reconstruct = _numpy_attr("numpy._core.multiarray:_reconstruct", "numpy.core.multiarray:_reconstruct")
_frombuffer = _numpy_attr("numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer")
_scalar = _numpy_attr("numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar")


class _Refused(Exception):
    """A reconstructor refused its arguments; :func:`load` names the file."""


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # A plain ndarray only: a subclass's __array_finalize__ / __setstate__ is code.
    if subtype is not np.ndarray:
        raise _Refused(f"numpy _reconstruct of {getattr(subtype, '__name__', type(subtype).__name__)}, not numpy.ndarray")
    return _reconstruct(subtype, shape, dtype)


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:  # an object array's items would come from the pickle's own objects
        raise _Refused("an object-dtype array")
    return dt


def _safe_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    # Python 3 pickles bytes at protocols < 3 as _codecs.encode(str, "latin1"); other codecs
    # (zlib, base64...) are transformations a data file has no need for.
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


# (module, name) as the pickle spells it -> what it resolves to. Names from both numpy
# generations map to this numpy's objects without importing the deprecated numpy.core shim.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _safe_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _safe_encode,
}


_ONLY_DATA = "a dataset pickle holds only dicts, lists, numbers, bytes, strings and numpy arrays"


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], name: str, encoding: str):
        super().__init__(file, encoding=encoding)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(
                f"{self._name}: refusing to unpickle {module}.{name}: {_ONLY_DATA}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError(f"{self._name}: refusing to unpickle a persistent reference")


# What a malformed pickle raises from inside the unpickler: its own error, a short read, or a
# reconstructor refusing its arguments.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
              KeyError, OverflowError, RecursionError, UnicodeDecodeError)


def load(source: str | os.PathLike | IO[bytes], *, encoding: str = "bytes") -> Any:
    """Unpickle ``source`` (a path or a binary file) admitting only data, never code.

    ``encoding`` decodes Python 2 ``str`` objects: ``"bytes"`` keeps them as bytes (CIFAR-10's
    keys are ``b"data"``, ``b"labels"``), ``"latin1"`` makes them ``str``. Raises
    :class:`ForbiddenPickleError` for any global outside :data:`ALLOWED_GLOBALS`,
    :class:`UnreadablePickleError` for a truncated or corrupt file, and a one-line
    :class:`~dcgan_features.core.errors.UserError` when the file cannot be opened.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with open(path, "rb") as f:
                return _load(f, str(path), encoding)
        except OSError as e:
            raise UserError(f"cannot read {str(path)!r}: {e.strerror or type(e).__name__}") from None
    return _load(source, str(getattr(source, "name", "<stream>")), encoding)


def loads(data: bytes, *, encoding: str = "bytes", name: str = "<bytes>") -> Any:
    """:func:`load` for a pickle already in memory."""
    return _load(io.BytesIO(data), name, encoding)


def _load(f: IO[bytes], name: str, encoding: str) -> Any:
    try:
        return _RestrictedUnpickler(f, name, encoding).load()
    except UserError:
        raise
    except _Refused as e:
        raise ForbiddenPickleError(f"{name}: refusing to unpickle {e}: {_ONLY_DATA}") from None
    except _MALFORMED as e:
        detail = str(e).splitlines()[0] if str(e) else "truncated or corrupt"
        raise UnreadablePickleError(f"{name} is not a readable pickle ({type(e).__name__}: {detail})",
                                    type(e).__name__) from None


def plain_array(value: Any, dtype: Any, what: str) -> np.ndarray:
    """``np.asarray(value, dtype)`` for a value read from a pickle, without its traps.

    A pickle can share one list many times (``d = [d, d]`` forty deep is 2**40 elements in a
    few hundred bytes) or hold a list that contains itself: ``np.asarray`` would try to build
    the first until memory runs out and fails on the second. The elements are counted first,
    each shared list once, and the array is refused in one line when it would not fit in memory.

    >>> plain_array([[1, 2], [3, 4]], np.int64, "labels").tolist()
    [[1, 2], [3, 4]]
    >>> d = [1]
    >>> for _ in range(40): d = [d, d]
    >>> plain_array(d, np.int64, "'labels'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dcgan_features.core.errors.UserError: 'labels' holds 1099511627776 elements (lists shared inside the pickle) ...
    """
    from ..core.memory import available_bytes, format_bytes

    if isinstance(value, (list, tuple)):
        try:
            n = _leaves(value, {}, set())
        except (ValueError, RecursionError):
            raise UserError(f"{what} is a list that contains itself or is nested too deeply; "
                            "not a dataset's array") from None
        need = n * max(np.dtype(dtype).itemsize, 8) * 2  # the array and numpy's pass over the lists
        if need > available_bytes():
            raise UserError(f"{what} holds {n} elements (lists shared inside the pickle) and would need "
                            f"{format_bytes(need)} of memory, more than is available; not a dataset's array")
    return np.asarray(value, dtype=dtype)


def _leaves(value: Any, memo: dict, open_: set) -> int:
    """Elements of nested lists/tuples, each shared list counted once per use (memo) and cycles refused."""
    if not isinstance(value, (list, tuple)):
        return 1
    key = id(value)
    if key in memo:
        return memo[key]
    if key in open_:
        raise ValueError("cycle")
    open_.add(key)
    n = sum(_leaves(v, memo, open_) for v in value) if value else 1
    open_.discard(key)
    memo[key] = n
    return n
