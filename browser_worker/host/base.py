"""The host seam: everything a worker needs from the place it runs, behind one interface.

Three implementations: Pyodide in a browser (``js.WebSocket`` through ``pyodide.ffi``), CPython
(the ``websockets`` client) and in-memory (tests and emulation). Nothing else in
``browser_worker`` touches sockets, clocks, storage or ``js``. Standard library only.

Raises :class:`ConnectionClosed` from :meth:`Connection.receive` and :meth:`Connection.send`
once the connection is gone, and :class:`ConnectFailed` from :meth:`Host.connect`.
"""

from __future__ import annotations

import abc

from dandelion.protocol.secagg.crypto import CryptoHost
from dandelion.protocol.secagg.vectors import Mod32Ops

__all__ = ["ConnectFailed", "Connection", "ConnectionClosed", "Host", "KeyValueStore", "MemoryKV"]


class ConnectionClosed(Exception):
    """The connection is closed; ``code`` and ``reason`` are the close frame's, if known."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class ConnectFailed(Exception):
    """The coordinator could not be reached."""


class Connection(abc.ABC):
    """One WebSocket to the coordinator: whole messages in, whole messages out."""

    @abc.abstractmethod
    async def send(self, message: str | bytes) -> None:
        """Send one text (str) or binary (bytes) message."""

    @abc.abstractmethod
    async def receive(self) -> str | bytes:
        """The next whole message. Raises ConnectionClosed."""

    @abc.abstractmethod
    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close; safe to call twice."""


class KeyValueStore(abc.ABC):
    """Small persistent strings (the worker id, consent, counters): localStorage in a browser."""

    @abc.abstractmethod
    def get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set(self, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget everything (opt-out deletes local state)."""


class MemoryKV(KeyValueStore):
    """A dict-backed store, for tests, emulation and hosts without persistence."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class Host(abc.ABC):
    """What the worker gets from its surroundings."""

    #: The ``runtime.kind`` the worker reports in its hello.
    runtime_kind: str = "other"
    runtime_version: str = ""

    @abc.abstractmethod
    async def connect(self, url: str) -> Connection:
        """Open a WebSocket to ``url``. Raises ConnectFailed."""

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds since the epoch (wall clock; virtual in emulation)."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait without blocking the host's event loop."""

    @property
    @abc.abstractmethod
    def storage(self) -> KeyValueStore: ...

    def log(self, level: str, message: str) -> None:  # noqa: B027 - optional hook
        """Report a line to the host's log (console in a browser). Default: nothing."""

    def secagg_crypto(self) -> tuple[CryptoHost, Mod32Ops]:
        """Secure aggregation's crypto and mod-2^32 vector arithmetic on this host
        (docs/secure_aggregation.md, Layers and hosts). Raises NotImplementedError on a host
        that has none: such a worker cannot take part in a secure round."""
        raise NotImplementedError(f"{type(self).__name__} has no crypto for secure aggregation")
