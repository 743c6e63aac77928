"""The CPython host: a real WebSocket through the ``websockets`` client library.

The only module of ``browser_worker`` that imports ``websockets``; it is imported lazily so
that the worker package itself loads in Pyodide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import time
from pathlib import Path

from dandelion.protocol.secagg.crypto import CryptoHost
from dandelion.protocol.secagg.vectors import Mod32Ops

from .base import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore, MemoryKV

__all__ = ["CPythonHost", "FileKV", "WebSocketConnection"]

log = logging.getLogger("browser_worker")


class WebSocketConnection(Connection):
    def __init__(self, ws: object) -> None:
        self._ws = ws

    async def send(self, message: str | bytes) -> None:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            await self._ws.send(message)  # type: ignore[attr-defined]
        except WsClosed as exc:
            raise ConnectionClosed(_code(exc), _reason(exc)) from None

    async def receive(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            data = await self._ws.recv()  # type: ignore[attr-defined]
        except WsClosed as exc:
            raise ConnectionClosed(_code(exc), _reason(exc)) from None
        assert isinstance(data, str | bytes)
        return data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)  # type: ignore[attr-defined]


def _code(exc: object) -> int | None:
    rcvd = getattr(exc, "rcvd", None)
    return getattr(rcvd, "code", None)


def _reason(exc: object) -> str:
    rcvd = getattr(exc, "rcvd", None)
    return str(getattr(rcvd, "reason", ""))


class FileKV(KeyValueStore):
    """A JSON file as the worker's persistent store."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        try:
            self._data: dict[str, str] = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self._data = {}

    def _save(self) -> None:
        self._path.write_text(json.dumps(self._data))

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def set(self, key: str, value: str) -> None:
        self._data[key] = value
        self._save()

    def delete(self, key: str) -> None:
        self._data.pop(key, None)
        self._save()

    def clear(self) -> None:
        self._data = {}
        self._save()


class CPythonHost(Host):
    """Runs a worker in CPython over real WebSockets (the demo, the emulator's socket mode)."""

    runtime_kind = "cpython"

    def __init__(
        self,
        *,
        storage: KeyValueStore | None = None,
        max_size: int = 64 * 1024 * 1024,
        open_timeout: float = 10.0,
        ssl: object | None = None,
    ) -> None:
        self.runtime_version = platform.python_version()
        self._storage = storage or MemoryKV()
        self._max_size = max_size
        self._open_timeout = open_timeout
        self._ssl = ssl

    async def connect(self, url: str) -> Connection:
        from websockets.asyncio.client import connect

        kwargs: dict[str, object] = {}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        try:
            ws = await connect(
                url,
                compression=None,  # float32 tensors don't compress; deflate costs CPU and memory
                max_size=self._max_size,
                open_timeout=self._open_timeout,
                ping_interval=None,  # the coordinator pings; we answer
                **kwargs,  # type: ignore[arg-type]
            )
        except (TimeoutError, OSError) as exc:
            raise ConnectFailed(f"{url}: {exc}") from None
        except Exception as exc:  # websockets' InvalidHandshake family, InvalidURI
            raise ConnectFailed(f"{url}: {exc}") from None
        return WebSocketConnection(ws)

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def storage(self) -> KeyValueStore:
        return self._storage

    def log(self, level: str, message: str) -> None:
        log.log(logging.getLevelName(level.upper()), message)

    def secagg_crypto(self) -> tuple[CryptoHost, Mod32Ops]:
        """The ``cryptography`` package and numpy (``dandelion.crypto``), as the coordinator
        uses them: this host runs in CPython only, outside the worker wheel."""
        from dandelion.crypto import CryptographyHost, NumpyMod32

        return CryptographyHost(), NumpyMod32()
