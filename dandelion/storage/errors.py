"""Storage errors.

::

    StorageError          the state could not be read or written (disk full, read-only file,
    │                     corrupt database); the caller decides whether to degrade or stop
    └── ConflictError     a write that contradicts what is stored (a duplicate task or version)
        └── FencedError   a leader's write carries an epoch below the task's last one: a newer
                          leader has taken over, and this one must stop
"""

from __future__ import annotations

__all__ = ["ConflictError", "FencedError", "StorageError"]


class StorageError(Exception):
    """Reading or writing the state failed."""


class ConflictError(StorageError):
    """The write contradicts stored state, e.g. a task name that is taken."""


class FencedError(ConflictError):
    """A write fenced off: its leader epoch is below the one the task last committed with."""
