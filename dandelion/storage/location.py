"""Where the state is: ``--db`` is a SQLite file's path (the embedded default) or a
``postgresql://`` URL. Every command opens its store and takes its lease through here.

Nothing here imports psycopg until a URL asks for it: SQLite alone needs no PostgreSQL driver.
Raises :class:`~dandelion.storage.errors.StorageError` when a URL is given and the driver is
not installed (``pip install 'dandelion-fl[postgresql]'``), and :class:`StateURLError` for a
URL that libpq cannot read (checked before anything connects).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .errors import StorageError
from .lease import Lease, StateLease

if TYPE_CHECKING:
    from .interface import StateStore

__all__ = [
    "StateURLError",
    "check_url",
    "is_postgres_url",
    "open_state",
    "redacted",
    "state_lease",
]

_SCHEMES = ("postgresql://", "postgres://")


class StateURLError(StorageError):
    """``--db`` is a ``postgresql://`` URL that cannot be read: correct it (exit status 2)."""


def is_postgres_url(db: str) -> bool:
    """Whether ``db`` names a PostgreSQL database (else it is a SQLite file's path)."""
    return db.startswith(_SCHEMES)


def redacted(db: str) -> str:
    """``db`` without a password, for messages and logs."""
    if not is_postgres_url(db):
        return db
    try:
        parts = urlsplit(db)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:  # malformed: hide whatever stands between "user:" and "@"
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", db)
    if parts.password is None:
        return db
    netloc = f"{parts.username}:***@{parts.hostname or ''}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def _driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StorageError(
            "--db postgresql://… needs the PostgreSQL driver: "
            "pip install 'dandelion-fl[postgresql]'"
        ) from None


def check_url(db: str) -> None:
    """Check that libpq can read the ``postgresql://`` URL ``db`` (nothing connects).

    Raises StateURLError naming what is wrong, StorageError without the driver."""
    _driver()
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(db)
    except psycopg.Error as exc:
        raise StateURLError(f"{redacted(db)}: {str(exc).strip().splitlines()[0]}") from None
    for port in str(info.get("port", "")).split(","):  # one per host: h1:5432,h2:5433
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise StateURLError(f"{redacted(db)}: the port {port!r} is not a TCP port number")


def open_state(db: str, *, readonly: bool = False, command: str = "") -> StateStore:
    """A store on ``db``, migrated unless ``readonly``."""
    if is_postgres_url(db):
        check_url(db)
        from .postgres import PostgresStore

        return PostgresStore(db, readonly=readonly, command=command)
    from .sqlite import SQLiteStore

    return SQLiteStore(db, readonly=readonly)


def state_lease(db: str, *, command: str = "serve", shared: bool = False) -> Lease:
    """The lease on ``db``: a lock file beside a SQLite file, an advisory lock in PostgreSQL
    (``shared``: a cluster shard's, held by K shards together; PostgreSQL only)."""
    if is_postgres_url(db):
        check_url(db)
        from .pg_lease import PostgresLease

        return PostgresLease(db, command=command, shared=shared)
    if shared:
        raise ValueError("a shared lease (a cluster's) needs a postgresql:// state")
    return StateLease(db, command=command)
