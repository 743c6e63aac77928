"""Host seams for the worker: in-memory here; CPython and Pyodide in their own modules."""

from __future__ import annotations

from .base import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore, MemoryKV
from .memory import MemoryConnection, MemoryHost, connection_pair

__all__ = [
    "ConnectFailed",
    "Connection",
    "ConnectionClosed",
    "Host",
    "KeyValueStore",
    "MemoryConnection",
    "MemoryHost",
    "MemoryKV",
    "connection_pair",
]
