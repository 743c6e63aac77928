"""The lease on a state file: one process writes it as a coordinator at a time.

``dandelion serve`` holds the lease for its whole life; ``dandelion restore``, ``dandelion demo
--db`` and a command that would apply schema migrations hold it while they run. A second
holder is refused with :class:`LeaseHeldError`, which names the first: pid, host, start time.

The lease is an OS lock — ``flock(LOCK_EX | LOCK_NB)`` — on a sidecar file next to the state
file, ``<state file>.lock``, into which the holder writes who it is. The kernel drops the lock
when the holder's descriptor closes, which includes its death by any signal (SIGKILL too): a
crashed coordinator never leaves a lease behind.

Rules of this file:

- The lock is the truth. The sidecar's text (pid, host, start time) is only what a refused
  process prints: it may be stale (a holder killed with SIGKILL leaves it) or briefly empty
  (a holder between locking and writing), and nothing is decided by it.
- The sidecar is never deleted: unlinking a locked file lets a second process create and lock
  a new file of the same name, and both would believe they hold the lease.
- A sidecar, not the database itself: SQLite takes POSIX (``fcntl``) locks on the database
  file, and POSIX locks are per process and dropped when *any* descriptor of the file closes,
  so a lock there would vanish the first time the process closed a SQLite connection.
- Nothing here opens the database.

::

    LeaseError           the sidecar cannot be created or locked (no such folder, read-only)
    └── LeaseHeldError   another live process holds the lease; ``holder`` says who, if known
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

__all__ = ["Holder", "Lease", "LeaseError", "LeaseHeldError", "StateLease", "lease_path"]

# How long a refused process waits for the holder's sidecar text to appear (it locks first,
# then writes): enough for a write of a hundred bytes, short enough not to be noticed.
_READ_RETRY_S = 0.5


def lease_path(db: str | os.PathLike[str]) -> Path:
    """The sidecar file of the state file ``db``: ``<db>.lock``."""
    path = Path(db)
    return path.with_name(path.name + ".lock")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, as its sidecar says."""

    pid: int
    host: str
    since: float  # seconds since the epoch
    command: str = ""  # e.g. "serve", "restore"

    def describe(self) -> str:
        """``pid 1234 on host h since 2026-12-03T08:00:00Z``."""
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return f"pid {self.pid} on host {self.host} since {started}"

    def to_json(self) -> str:
        return json.dumps(
            {"pid": self.pid, "host": self.host, "since": self.since, "command": self.command}
        )

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder in a sidecar's text, or None if it is empty or half written."""
        try:
            raw = json.loads(text)
            return cls(int(raw["pid"]), str(raw["host"]), float(raw["since"]), str(raw["command"]))
        except (ValueError, TypeError, KeyError):
            return None


class LeaseError(Exception):
    """The lease cannot be taken: its sidecar file cannot be created or locked."""


class LeaseHeldError(LeaseError):
    """Another live process holds the lease on ``db``."""

    def __init__(self, db: str | os.PathLike[str], holder: Holder | None, *, what: str = ""):
        self.db = str(db)
        self.holder = holder
        who = holder.describe() if holder else "another process"
        if holder is None or holder.command == "serve":
            advice = "stop that coordinator first"
        else:
            advice = f"wait for that `dandelion {holder.command}` to finish"
        # ``what`` says what else is true of the file, e.g. "needs schema migrations (m004) and ".
        where = (
            "the database" if self.db.startswith(("postgresql://", "postgres://")) else "state file"
        )
        super().__init__(f"{where} {self.db} {what}is held by {who}; {advice}")


class Lease(Protocol):
    """What every lease does: this file's :class:`StateLease` on a SQLite file, and
    ``pg_lease.PostgresLease`` on a PostgreSQL database. A context manager."""

    @property
    def held(self) -> bool: ...

    def acquire(self) -> Holder:
        """Take it, or raise LeaseHeldError (held by another) or LeaseError (cannot)."""
        ...

    def release(self) -> None:
        """Give it back (idempotent)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class StateLease:
    """The exclusive lease on one state file; a context manager.

    ``acquire()`` raises :class:`LeaseHeldError` when another process (or another
    ``StateLease`` in this one) holds it, :class:`LeaseError` when the sidecar cannot be made.
    """

    def __init__(self, db: str | os.PathLike[str], *, command: str = "serve") -> None:
        self.db = Path(db)
        self.path = lease_path(db)
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Holder:
        """Take the lease and write this process into the sidecar; return what was written."""
        if self._fd is not None:
            raise LeaseError(f"the lease on {self.db} is already held by this StateLease")
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LeaseHeldError(self.db, holder) from None
        except OSError as exc:
            os.close(fd)
            raise LeaseError(f"cannot lock {self.path}: {exc.strerror}") from None
        me = Holder(os.getpid(), socket.gethostname(), time.time(), self.command)
        data = (me.to_json() + "\n").encode()
        # Overwrite, then cut: a reader sees the old text, a mix it cannot parse, or the new.
        with contextlib.suppress(OSError):  # a sidecar opened read-only: the lock still holds
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        self._fd = fd
        return me

    def release(self) -> None:
        """Give the lease back (idempotent). The sidecar stays; its text is cleared."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            raise LeaseError(f"the folder {self.db.parent} of {self.db} does not exist") from None
        except OSError as exc:
            first = exc
        # Made by another user (say root, for a restore): flock needs only a readable file.
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            raise LeaseError(f"cannot create {self.path}: {first.strerror}") from None

    def __enter__(self) -> StateLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> Holder | None:
    """The holder's text, waiting briefly while it is being written (or is a dead one's)."""
    deadline = time.monotonic() + _READ_RETRY_S
    while True:
        holder = Holder.from_json(os.pread(fd, 4096, 0).decode(errors="replace"))
        if holder is not None and _plausible(holder):
            return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _plausible(holder: Holder) -> bool:
    """False for a pid on this host that is gone: the text of a holder killed earlier."""
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:  # EPERM: it exists, under another user
        return exc.errno == errno.EPERM
    return True
