"""The edges towards workers: the conversation driver, and its two transports — the WebSocket
endpoint and the in-memory transport — with inbound validation."""

from __future__ import annotations

from .driver import Conversation, ConversationDriver, DriverCounters, Link
from .memory import Channel, MemoryTransport
from .validation import SchemaValidator, schema_dir
from .websocket import WORKER_PATH, WorkerEndpoint

__all__ = [
    "WORKER_PATH",
    "Channel",
    "Conversation",
    "ConversationDriver",
    "DriverCounters",
    "Link",
    "MemoryTransport",
    "SchemaValidator",
    "WorkerEndpoint",
    "schema_dir",
]
