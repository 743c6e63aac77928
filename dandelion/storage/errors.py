"""Storage errors.

::

    StorageError          the state could not be read or written (disk full, read-only file,
    │                     corrupt database); the caller decides whether to degrade or stop
    └── ConflictError     a write that contradicts what is stored (a duplicate task or version)
"""

from __future__ import annotations

__all__ = ["ConflictError", "StorageError"]


class StorageError(Exception):
    """Reading or writing the state failed."""


class ConflictError(StorageError):
    """The write contradicts stored state, e.g. a task name that is taken."""
