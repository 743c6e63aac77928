"""The Pyodide host: a browser WebSocket through ``js.WebSocket`` and ``pyodide.ffi``.

With :mod:`.webcrypto` (secure aggregation's crypto), the only modules of ``browser_worker``
that import ``js`` or ``pyodide``; it is imported by ``browser_worker.browser`` inside Pyodide
only. The browser owns the event loop: nothing here
blocks or calls ``asyncio.run``. Persistent storage and logging go through a *bridge*, a small
JS object the Web Worker glue passes in (``kvGet``, ``kvSet``, ``kvDelete``, ``kvClear``,
``log``), so the page or extension decides where state lives (localStorage, chrome.storage).
"""

from __future__ import annotations

import asyncio
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, to_js  # type: ignore[import-not-found]

from dandelion.protocol.secagg.crypto import CryptoHost
from dandelion.protocol.secagg.vectors import Mod32Ops

from .base import ConnectFailed, Connection, ConnectionClosed, Host, KeyValueStore

__all__ = ["BridgeKV", "BrowserWebSocket", "PyodideHost"]

_CLOSED = object()


class BrowserWebSocket(Connection):
    """One ``WebSocket`` of the browser: frames are queued as they arrive."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._closed: tuple[int | None, str] | None = None
        self._proxies = [
            create_proxy(self._on_message),
            create_proxy(self._on_close),
        ]
        ws.onmessage, ws.onclose = self._proxies

    def _on_message(self, event: Any) -> None:
        data = event.data
        # Text frames arrive as JS strings (converted to str); binary ones as ArrayBuffers.
        self._inbox.put_nowait(data if isinstance(data, str) else data.to_bytes())

    def _on_close(self, event: Any) -> None:
        self._closed = (int(event.code), str(event.reason))
        self._inbox.put_nowait(_CLOSED)
        for proxy in self._proxies:
            proxy.destroy()
        self._proxies = []

    async def send(self, message: str | bytes) -> None:
        if self._closed is not None or int(self._ws.readyState) != 1:
            raise ConnectionClosed(*(self._closed or (None, "not open")))
        self._ws.send(message if isinstance(message, str) else to_js(message))

    async def receive(self) -> str | bytes:
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # later receives see the close too
            raise ConnectionClosed(*(self._closed or (None, "")))
        assert isinstance(item, str | bytes)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed is None and int(self._ws.readyState) in (0, 1):
            self._ws.close(code, reason)


class BridgeKV(KeyValueStore):
    """Key-value storage held by the JS side (it persists every change)."""

    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge

    def get(self, key: str) -> str | None:
        value = self._bridge.kvGet(key)
        return value if isinstance(value, str) else None  # undefined/null: absent

    def set(self, key: str, value: str) -> None:
        self._bridge.kvSet(key, value)

    def delete(self, key: str) -> None:
        self._bridge.kvDelete(key)

    def clear(self) -> None:
        self._bridge.kvClear()


class PyodideHost(Host):
    """Runs the worker inside a browser's Web Worker."""

    runtime_kind = "pyodide"

    def __init__(self, bridge: Any, *, open_timeout_s: float = 15.0) -> None:
        import sys

        self.runtime_version = sys.version.split()[0]
        self._bridge = bridge
        self._storage = BridgeKV(bridge)
        self._open_timeout_s = open_timeout_s

    def secagg_crypto(self) -> tuple[CryptoHost, Mod32Ops]:
        """WebCrypto and typed-array arithmetic (``webcrypto.py``)."""
        from .webcrypto import TypedArrayMod32, WebCryptoHost

        return WebCryptoHost(), TypedArrayMod32()

    async def connect(self, url: str) -> Connection:
        try:
            ws = js.WebSocket.new(url)
        except Exception as exc:  # a malformed URL throws SyntaxError synchronously
            raise ConnectFailed(f"{url}: {exc}") from None
        ws.binaryType = "arraybuffer"
        opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def settle(ok: bool) -> None:
            if not opened.done():
                opened.set_result(ok)

        on_open = create_proxy(lambda _e: settle(True))
        on_fail = create_proxy(lambda _e: settle(False))
        ws.onopen, ws.onerror, ws.onclose = on_open, on_fail, on_fail
        try:
            ok = await asyncio.wait_for(opened, self._open_timeout_s)
        except TimeoutError:
            ok = False
        finally:
            ws.onopen = ws.onerror = ws.onclose = None
            on_open.destroy()
            on_fail.destroy()
        if not ok:
            if int(ws.readyState) in (0, 1):
                ws.close()
            raise ConnectFailed(f"{url}: the WebSocket did not open")
        return BrowserWebSocket(ws)

    def now(self) -> float:
        return float(js.Date.now()) / 1000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def storage(self) -> KeyValueStore:
        return self._storage

    def log(self, level: str, message: str) -> None:
        self._bridge.log(level, message)
