"""The lease on a PostgreSQL state: one coordinator writes a database at a time.

The PostgreSQL twin of ``lease.py``'s lock file: a session-level advisory lock,
``pg_try_advisory_lock``, taken on a connection of its own that stays open for the holder's
life. PostgreSQL drops the lock when that session ends — the holder closing it, or dying by any
signal (SIGKILL too): the kernel closes its socket and the server ends the session — so a
crashed coordinator never leaves a lease behind.

Rules of this file:

- The lock is the truth. Who holds it is read from ``pg_stat_activity``: the holder's session
  names itself ``dandelion <command> <pid>@<host>`` (its ``application_name``), and its
  ``backend_start`` is when it took the lease. Nothing is decided by that text.
- Advisory locks belong to one database: one Dandelion state per database.
- A cluster's shards (``serve --cluster``) take the same lock in its *shared* mode
  (``pg_try_advisory_lock_shared``): K of them write one database side by side, and a writer
  that is not one of them (a second plain ``serve``, a migrating command) is refused while any
  holds it — as they are refused while such a writer holds it.
- Nothing here reads or writes Dandelion's tables.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from types import TracebackType
from typing import Self

import psycopg
from psycopg.rows import TupleRow

from .lease import Holder, LeaseError, LeaseHeldError
from .location import redacted
from .postgres import connect

__all__ = ["LEASE_KEY", "PostgresLease"]

#: The advisory lock's two keys: ours ("DAND"), and what it guards (1: the writer's lease).
LEASE_KEY = (0x44414E44, 1)


class PostgresLease:
    """The exclusive lease on the Dandelion state in one PostgreSQL database."""

    def __init__(self, url: str, *, command: str = "serve", shared: bool = False) -> None:
        self.url = url
        self.command = command
        self.shared = shared
        self._conn: psycopg.Connection[TupleRow] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> Holder:
        """Take the lease; return who holds it now (this process).

        Raises LeaseHeldError naming the holder, StorageError when the server cannot be
        reached, LeaseError when it refuses the lock.
        """
        if self._conn is not None:
            raise LeaseError(f"the lease on {redacted(self.url)} is already held here")
        me = Holder(os.getpid(), socket.gethostname(), time.time(), self.command)
        conn = connect(self.url, f"dandelion {self.command} {me.pid}@{me.host}")
        try:
            take = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
            row = conn.execute(f"SELECT {take}(%s, %s)", LEASE_KEY).fetchone()
            if row is None or not row[0]:
                holder = _holder(conn)
                conn.close()
                raise LeaseHeldError(redacted(self.url), holder)
        except psycopg.Error as exc:
            conn.close()
            raise LeaseError(f"cannot lock {redacted(self.url)}: {exc}") from None
        self._conn = conn
        return me

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # ending the session drops the advisory lock

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(conn: psycopg.Connection[TupleRow]) -> Holder | None:
    """Who holds the lease, as its session names itself; None if it cannot be told."""
    row = conn.execute(
        "SELECT a.application_name, extract(epoch FROM a.backend_start)::float8 "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2",
        LEASE_KEY,
    ).fetchone()
    if row is None:
        return None
    name, since = str(row[0] or ""), float(row[1] or 0.0)
    words = name.split()
    if len(words) != 3 or words[0] != "dandelion" or "@" not in words[2]:
        return None
    pid, _, host = words[2].partition("@")
    if not pid.isdigit():
        return None
    return Holder(int(pid), host, since, words[1])
