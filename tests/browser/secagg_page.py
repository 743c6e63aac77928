"""Secure-aggregation clients living in a page's Pyodide (``secagg_client_in_pyodide.py``,
loaded into a ``pyodide_page``), as the CPython harness sees them: one per index, driven one
message at a time. Used by tests/browser/test_secagg_mixed_round.py and benchmarks/secagg.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dandelion.protocol.secagg.client import ClientState
from dandelion.protocol.secagg.messages import SecAggMessage, encode_secagg, parse_secagg

__all__ = ["CLIENT_CODE", "BrowserClient"]

#: The Python the page runs for its clients (``await page.evaluate("(c) => window.__run(c)",
#: CLIENT_CODE)`` makes a fresh set).
CLIENT_CODE = (Path(__file__).parent / "secagg_client_in_pyodide.py").read_text()


class BrowserClient:
    """One secure-aggregation client in the page's Pyodide; its time is measured there
    (``secagg_spent()``)."""

    def __init__(self, page: Any, index: int) -> None:
        self.page, self.index = page, index
        self.state = ClientState.START

    async def _call(self, code: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            await self.page.evaluate("(c) => window.__run(c)", code)
        )
        self.state = ClientState[result["state"]]
        return result

    async def receive(self, msg: SecAggMessage) -> list[SecAggMessage]:
        raw = json.dumps(encode_secagg(msg))
        result = await self._call(f"await secagg_receive({self.index}, {raw})")
        return [parse_secagg(m) for m in result["out"]]

    async def mask(self, values: list[float]) -> tuple[SecAggMessage, bytes]:
        raw = json.dumps(json.dumps([float(v) for v in values]))
        result = await self._call(f"await secagg_mask({self.index}, {raw})")
        return parse_secagg(result["msg"]), bytes.fromhex(result["frame"])
