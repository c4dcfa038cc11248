"""The one exception type the CLI turns into a single line on stderr.

Library code raises :class:`UserError` (or a subclass) for anything the user can fix:
a missing file, a bad flag value, a foreign checkpoint. ``cli.main`` catches it and
prints ``error: <message>`` with a non-zero exit; everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls; its message is one line with a fix."""

    exit_code = 2


class DatasetError(UserError):
    """A dataset is missing or malformed on disk."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, or made for another architecture."""


class FeatureFileError(UserError):
    """An HDF5 feature file is incomplete, foreign, or does not match the request."""


class WriteError(UserError):
    """An output could not be written: disk full, read-only, no permission (the path is named)."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full
