"""Task commands run straight against the SQLite state file (the server may be running:
WAL lets both use it; the server picks new tasks and status changes up within seconds)."""

from __future__ import annotations

import time
from typing import Any

from .coordinator import TaskConfig, create_task
from .storage import SQLiteStore

__all__ = ["create_task_in", "describe_task", "list_tasks_in"]


def create_task_in(db: str, config: TaskConfig) -> dict[str, Any]:
    """Create ``config`` with its initial model in the file ``db``. Raises ValueError if taken."""
    store = SQLiteStore(db)
    try:
        if store.get_task(config.name) is not None:
            raise ValueError(f"a task named {config.name!r} exists already")
        create_task(store, config, time.time())
    finally:
        store.close()
    return {"name": config.name, "param_count": config.model.param_count, "status": "active"}


def list_tasks_in(db: str) -> list[dict[str, Any]]:
    store = SQLiteStore(db)
    try:
        rows = []
        for record in store.list_tasks():
            latest = store.latest_model_version(record.name)
            rows.append(
                {
                    "name": record.name,
                    "status": record.status,
                    "objective": record.config.get("objective"),
                    "model_version": latest.version if latest else None,
                    "rounds": store.last_round_number(record.name),
                }
            )
        return rows
    finally:
        store.close()


def describe_task(db: str, name: str) -> dict[str, Any] | None:
    store = SQLiteStore(db)
    try:
        record = store.get_task(name)
        if record is None:
            return None
        latest = store.latest_model_version(name)
        rounds = store.list_rounds(name, 10)
        return {
            "name": record.name,
            "status": record.status,
            "created_at": record.created_at,
            "config": record.config,
            "model_version": latest.version if latest else None,
            "model_metrics": latest.metrics if latest else {},
            "rounds_opened": store.last_round_number(name),
            "recent_rounds": [
                {
                    "round": r.round,
                    "status": r.status,
                    "goal": r.goal,
                    "assigned": r.assigned,
                    "reported": r.reported,
                    "rejected": r.rejected,
                    "dropped": r.dropped,
                    "metrics": r.metrics,
                }
                for r in rounds
            ],
        }
    finally:
        store.close()
