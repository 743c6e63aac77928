"""Secure aggregation benchmark: per-client time and bytes in CPython and in Pyodide in
Chromium, and the coordinator's time, for SecAgg+ rounds with dropouts.

One SecAggServer (``dandelion.protocol.secagg.server``, numpy vectors, the ``cryptography``
host) and n clients: n - B in this CPython (``cryptography``, numpy vectors) and B in Pyodide
in real headless Chromium (WebCrypto, typed arrays), every message carried through its JSON
form and every masked vector as its tensor frame. ``--dropout`` of the clients (10 %) drop out
after sharing their keys, the costliest moment for the coordinator: their pairwise masks must
be rebuilt from shares. Timed per client: the time spent inside its own ``receive``/``mask``
calls over the round (key generation, agreements, Shamir, AES-GCM of the shares, the fixed-point
encoding, the mask expansions, the reveal), not the time it waits for others. Timed for the
coordinator: its ``receive``/``tick`` calls, the unmasking included. Bytes: what one client
sends and receives (JSON messages and frames), median over clients.

    python benchmarks/secagg.py --sizes 100,1000 --dims 1000,100000 --json

With ``--json`` the last line is one JSON object with ``pyodide_client_s_n<N>_d<d>``,
``cpython_client_s_n<N>_d<d>`` and ``coordinator_s_n<N>_d<d>`` for every size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from dandelion.crypto import CryptographyHost, NumpyMod32  # noqa: E402
from dandelion.protocol.secagg import SecAggParams  # noqa: E402
from dandelion.protocol.secagg.client import ClientState, SecAggClient  # noqa: E402
from dandelion.protocol.secagg.messages import (  # noqa: E402
    SecAggMessage,
    encode_secagg,
    parse_secagg,
)
from dandelion.protocol.secagg.server import SecAggServer  # noqa: E402

HOST = CryptographyHost()
CLIENT_CODE = (ROOT / "tests" / "browser" / "secagg_client_in_pyodide.py").read_text()


class Timed:
    """A CPython client with the time spent in its own calls."""

    def __init__(self) -> None:
        self.client = SecAggClient(HOST, NumpyMod32())
        self.spent = 0.0

    @property
    def state(self) -> ClientState:
        return self.client.state

    async def receive(self, msg: SecAggMessage) -> list[SecAggMessage]:
        t0 = time.perf_counter()
        out = await self.client.receive(msg)
        self.spent += time.perf_counter() - t0
        return out

    async def mask(self, values: list[float]) -> tuple[SecAggMessage, bytes]:
        t0 = time.perf_counter()
        out = await self.client.mask(values)
        self.spent += time.perf_counter() - t0
        return out


class InBrowser:
    """A client in the page's Pyodide; its time is measured there (``secagg_spent``)."""

    def __init__(self, page: Any, index: int) -> None:
        self.page, self.index, self.state = page, index, ClientState.START

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
        raw = json.dumps(json.dumps(values))
        result = await self._call(f"await secagg_mask({self.index}, {raw})")
        return parse_secagg(result["msg"]), bytes.fromhex(result["frame"])


def wire(msg: SecAggMessage) -> tuple[SecAggMessage, int]:
    raw = encode_secagg(msg)
    return parse_secagg(raw), len(raw.encode())


async def secure_round(
    n: int, d: int, dropout: float, page: Any | None, browsers: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    params = SecAggParams.choose(n, d, 1.0)
    server = SecAggServer(params, "bench", 1, HOST, 0.0, ops=NumpyMod32(), seed=rng.randbytes(32))
    in_browser = set(rng.sample(range(1, n + 1), browsers)) if page is not None else set()
    clients: dict[int, Any] = {
        i: InBrowser(page, i) if i in in_browser else Timed() for i in range(1, n + 1)
    }
    if page is not None:
        await page.evaluate("(c) => window.__run(c)", CLIENT_CODE)  # fresh clients
    # the dropouts are CPython clients, so that every browser client's time is a whole round's
    cpython = sorted(set(clients) - in_browser)
    dropped = set(rng.sample(cpython, round(dropout * n)))

    def update(i: int) -> list[float]:  # made when it is masked: n x d floats would not fit
        values = np.random.default_rng([seed, i]).uniform(-1, 1, d) / d**0.5
        return [float(v) for v in values]

    sent = dict.fromkeys(clients, 0)
    got = dict.fromkeys(clients, 0)
    server_s, now, phase_no = 0.0, 0.0, 0
    while not server.finished:
        phase = server.phase
        replies: list[tuple[int, SecAggMessage, int, bytes | None]] = []
        for i, msg in server.take_outbox():
            msg, size = wire(msg)
            got[i] += size
            if i in dropped and phase_no >= 2:  # gone after sharing: masked phase on
                continue
            out = await clients[i].receive(msg)
            replies.extend((i, *wire(m), None) for m in out)
            if clients[i].state is ClientState.RELAYED and i not in dropped:
                masked, frame = await clients[i].mask(update(i))
                m, size = wire(masked)
                replies.append((i, m, size, frame))
        for i, m, size, frame in replies:
            sent[i] += size + (len(frame) if frame else 0)
            t0 = time.perf_counter()
            await server.receive(i, m, now, frame)
            server_s += time.perf_counter() - t0
        if server.phase is phase:
            now = server.deadline
            t0 = time.perf_counter()
            await server.tick(now)
            server_s += time.perf_counter() - t0
        phase_no += 1
    for i, msg in server.take_outbox():
        got[i] += wire(msg)[1]
    assert server.result is not None, server.abandon_reason
    browser_s: list[float] = []
    if page is not None:
        spent = json.loads(await page.evaluate("(c) => window.__run(c)", "secagg_spent()"))
        browser_s = [spent[str(i)] / 1000 for i in sorted(in_browser)]
    cpython_s = [clients[i].spent for i in cpython if i not in dropped]
    survivors = [i for i in clients if i not in dropped]
    return {
        "n": n,
        "d": d,
        "degree": params.degree,
        "threshold": params.threshold,
        "dropped": len(dropped),
        "cpython_client_s": statistics.median(cpython_s),
        "cpython_client_s_max": max(cpython_s),
        "pyodide_client_s": statistics.median(browser_s) if browser_s else None,
        "pyodide_client_s_all": browser_s,
        "coordinator_s": server_s,
        "client_sent_bytes": statistics.median(sent[i] for i in survivors),
        "client_received_bytes": statistics.median(got[i] for i in survivors),
        "plain_update_bytes": 4 * d,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000", help="n, comma-separated")
    ap.add_argument("--dims", default="1000,100000", help="d, comma-separated")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--browsers", type=int, default=3, help="clients in Chromium per round")
    ap.add_argument("--repeats", type=int, default=1, help="rounds per size (median reported)")
    ap.add_argument("--no-browser", action="store_true", help="CPython clients only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    dims = [int(x) for x in args.dims.split(",")]
    results: list[dict[str, Any]] = []

    async def run_all(page: Any | None) -> None:
        for n in sizes:
            for d in dims:
                runs = [
                    await secure_round(n, d, args.dropout, page, args.browsers, seed)
                    for seed in range(args.repeats)
                ]
                best = runs[len(runs) // 2]
                results.append(best)
                pyo = best["pyodide_client_s"]
                print(
                    f"n={n:5d} d={d:7d} k={best['degree']:3d} t={best['threshold']:3d} "
                    f"dropped={best['dropped']:3d}  client CPython {best['cpython_client_s']:.3f} s"
                    f"  Pyodide {'-' if pyo is None else f'{pyo:.3f}'} s  coordinator "
                    f"{best['coordinator_s']:.2f} s  client sends {best['client_sent_bytes']:,} B "
                    f"(plain update {best['plain_update_bytes']:,} B), receives "
                    f"{best['client_received_bytes']:,} B",
                    file=sys.stderr,
                    flush=True,
                )

    if args.no_browser:
        await run_all(None)
    else:
        import tempfile

        from playwright.async_api import async_playwright

        from dandelion.bundle import assemble_bundle
        from tests.browser.harness import (
            CHROMIUM_ARGS,
            CoordinatorProcess,
            PageServer,
            chromium_path,
            pyodide_page,
            task_toml,
        )

        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            assemble_bundle(bundle)
            (Path(tmp) / "c").mkdir()
            coord = CoordinatorProcess(Path(tmp) / "c", bundle, task_toml())
            await coord.start()
            server = PageServer(pyodide_page(coord.http + "/worker/"), {})
            await server.start()
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=chromium_path(), args=CHROMIUM_ARGS
                    )
                    page = await browser.new_page()
                    await page.goto(server.url)
                    await page.wait_for_function(
                        "() => Boolean(window.__run || window.__error)", timeout=120_000
                    )
                    await run_all(page)
                    await browser.close()
            finally:
                await server.stop()
                coord.stop()
    if args.json:
        out: dict[str, Any] = {}
        for r in results:
            tag = f"n{r['n']}_d{r['d']}"
            out[f"cpython_client_s_{tag}"] = round(r["cpython_client_s"], 4)
            if r["pyodide_client_s"] is not None:
                out[f"pyodide_client_s_{tag}"] = round(r["pyodide_client_s"], 4)
            out[f"coordinator_s_{tag}"] = round(r["coordinator_s"], 3)
            out[f"client_sent_bytes_{tag}"] = r["client_sent_bytes"]
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
