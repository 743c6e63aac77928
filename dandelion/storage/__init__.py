"""Coordinator state: one interface, a SQLite backend (the default), a PostgreSQL backend
(``postgres.py``, imported only for a ``postgresql://`` URL: ``location.open_state``), an
in-memory twin, and the asyncio wrapper that keeps the store off the event loop."""

from __future__ import annotations

from .errors import ConflictError, FencedError, StorageError
from .interface import StateStore
from .memory import MemoryStore
from .records import (
    CONSENT_STATES,
    EVENTS,
    ROUND_KINDS,
    ROUND_STATUSES,
    TASK_CHANGES,
    TASK_STATUSES,
    EvaluationRecord,
    LedgerEntry,
    ModelVersion,
    ModelVersionInfo,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    ShardCheckpoint,
    TaskChange,
    TaskConfigVersion,
    TaskRecord,
)
from .sqlite import SQLiteStore
from .writer import AsyncStore

__all__ = [
    "CONSENT_STATES",
    "EVENTS",
    "ROUND_KINDS",
    "ROUND_STATUSES",
    "TASK_CHANGES",
    "TASK_STATUSES",
    "AsyncStore",
    "ConflictError",
    "EvaluationRecord",
    "FencedError",
    "LedgerEntry",
    "MemoryStore",
    "ModelVersion",
    "ModelVersionInfo",
    "ParticipationEvent",
    "RoundCheckpoint",
    "RoundRecord",
    "SQLiteStore",
    "ShardCheckpoint",
    "StateStore",
    "StorageError",
    "TaskChange",
    "TaskConfigVersion",
    "TaskRecord",
]
