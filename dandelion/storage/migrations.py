"""Schema changes, in order, as sqlite-utils migrations. Never ALTER a table anywhere else.

To change the schema, add a function decorated with ``@MIGRATIONS()`` at the end; it runs once
per database, inside a transaction, and is recorded in ``_sqlite_migrations``.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["MIGRATIONS"]

MIGRATIONS = Migrations("dandelion")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    db["tasks"].create(  # type: ignore[union-attr]
        {"name": str, "config": str, "status": str, "created_at": float}, pk="name"
    )
    db["model_versions"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "version": int,
            "round": int,
            "params": bytes,
            "optimizer_state": bytes,
            "created_at": float,
            "metrics": str,
        },
        pk=("task", "version"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["rounds"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "model_version": int,
            "status": str,
            "opened_at": float,
            "closed_at": float,
            "goal": int,
            "assigned": int,
            "reported": int,
            "rejected": int,
            "dropped": int,
            "metrics": str,
        },
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["rounds"].create_index(["status"])  # type: ignore[union-attr]
    # Participation events: a pseudonymous id, what happened, when. No address, no content.
    db["events"].create(  # type: ignore[union-attr]
        {"id": int, "worker_id": str, "task": str, "round": int, "event": str, "at": float},
        pk="id",
    )
    db["events"].create_index(["task", "event"])  # type: ignore[union-attr]
    db["events"].create_index(["at"])  # type: ignore[union-attr]
    db["consent"].create(  # type: ignore[union-attr]
        {"worker_id": str, "state": str, "updated_at": float}, pk="worker_id"
    )
