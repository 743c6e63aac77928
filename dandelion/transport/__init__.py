"""The worker WebSocket endpoint and inbound validation."""

from __future__ import annotations

from .validation import SchemaValidator, schema_dir
from .websocket import WORKER_PATH, WorkerEndpoint

__all__ = ["WORKER_PATH", "SchemaValidator", "WorkerEndpoint", "schema_dir"]
