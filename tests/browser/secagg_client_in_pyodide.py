"""Run inside Pyodide (tests/browser/test_secagg_mixed_round.py sends this file to the page):
secure-aggregation clients on the browser's crypto host (WebCrypto) and typed-array vectors,
driven one message at a time from the test. Standard library and the worker wheel only."""

from __future__ import annotations

import json
import time

from browser_worker.host.webcrypto import TypedArrayMod32, WebCryptoHost
from dandelion.protocol.secagg.client import SecAggClient
from dandelion.protocol.secagg.messages import encode_secagg, parse_secagg

_host = WebCryptoHost()
_ops = TypedArrayMod32()
_clients: dict[int, SecAggClient] = {}
_spent_ms: dict[int, float] = {}


def _timed(i: int, started: float) -> None:
    _spent_ms[i] = _spent_ms.get(i, 0.0) + (time.perf_counter() - started) * 1000


async def secagg_receive(i: int, raw: str) -> str:
    started = time.perf_counter()
    client = _clients.setdefault(i, SecAggClient(_host, _ops))
    out = await client.receive(parse_secagg(raw))
    _timed(i, started)
    return json.dumps({"out": [encode_secagg(m) for m in out], "state": client.state.name})


async def secagg_mask(i: int, values_json: str) -> str:
    started = time.perf_counter()
    client = _clients[i]
    msg, frame = await client.mask(json.loads(values_json))
    _timed(i, started)
    return json.dumps({"msg": encode_secagg(msg), "frame": frame.hex(), "state": client.state.name})


def secagg_spent() -> str:
    return json.dumps(_spent_ms)
