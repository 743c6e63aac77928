"""Where the state is: ``--db`` is a SQLite file's path (the embedded default) or a
``postgresql://`` URL. Every command opens its store and takes its lease through here.

Nothing here imports psycopg until a URL asks for it: SQLite alone needs no PostgreSQL driver.
Raises :class:`~dandelion.storage.errors.StorageError` when a URL is given and the driver is
not installed (``pip install 'dandelion-fl[postgresql]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .errors import StorageError
from .lease import Lease, StateLease

if TYPE_CHECKING:
    from .interface import StateStore

__all__ = ["is_postgres_url", "open_state", "redacted", "state_lease"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str) -> bool:
    """Whether ``db`` names a PostgreSQL database (else it is a SQLite file's path)."""
    return db.startswith(_SCHEMES)


def redacted(db: str) -> str:
    """``db`` without a password, for messages and logs."""
    if not is_postgres_url(db):
        return db
    parts = urlsplit(db)
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


def open_state(db: str, *, readonly: bool = False, command: str = "") -> StateStore:
    """A store on ``db``, migrated unless ``readonly``."""
    if is_postgres_url(db):
        _driver()
        from .postgres import PostgresStore

        return PostgresStore(db, readonly=readonly, command=command)
    from .sqlite import SQLiteStore

    return SQLiteStore(db, readonly=readonly)


def state_lease(db: str, *, command: str = "serve") -> Lease:
    """The lease on ``db``: a lock file beside a SQLite file, an advisory lock in PostgreSQL."""
    if is_postgres_url(db):
        _driver()
        from .pg_lease import PostgresLease

        return PostgresLease(db, command=command)
    return StateLease(db, command=command)
