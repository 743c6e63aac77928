"""A secure round of mixed workers: clients in Pyodide in real headless Chromium (WebCrypto,
typed arrays) and in CPython (``cryptography``, numpy) under one SecAggServer, with dropouts
in every phase — the unmasked sum equals the plaintext sum exactly, and nothing the server
received correlates with any worker's update."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from dandelion.protocol.secagg import decode_sum, encode
from dandelion.protocol.secagg.client import ClientState
from dandelion.protocol.secagg.server import Phase
from tests.secagg_harness import Round

from .harness import PageServer, open_pyodide, pyodide_page, task_toml
from .secagg_page import CLIENT_CODE, BrowserClient


async def test_a_round_of_chromium_and_cpython_workers_with_dropouts_in_every_phase(
    coordinator: Any, browser: Any
) -> None:
    coord = await coordinator(task_toml())
    server = PageServer(pyodide_page(coord.http + "/worker/"), {})
    await server.start()
    try:
        page = await open_pyodide(browser, server)
        await page.evaluate("(c) => window.__run(c)", CLIENT_CODE)

        r = Round(40, d=1000, clip=2.0)  # k = 12, t = 7
        # a browser drops out in each phase, and so does a CPython worker
        in_browser = {1, 5, 8, 2, 10, 14, 20, 26, 31, 36}
        for i in in_browser:
            r.clients[i] = BrowserClient(page, i)  # type: ignore[assignment]
        drops = {
            Phase.ADVERTISE: {1, 17},
            Phase.SHARE: {5, 30},
            Phase.MASKED: {8, 22, 39},
            Phase.UNMASK: {2, 33},
        }
        await r.run(drops)
        spent = json.loads(await page.evaluate("(c) => window.__run(c)", "secagg_spent()"))
    finally:
        await server.stop()

    assert r.server.phase is Phase.DONE, r.server.abandon_reason
    assert r.sent_masked == set(range(1, 41)) - {1, 17, 5, 30, 8, 22, 39}
    assert r.sent_masked & in_browser and r.sent_masked - in_browser
    # exact: the unmasked sum is the sum of the encoded updates of those who sent one
    assert r.server.result == r.expected_total()
    got = np.array(r.server.decoded_sum())
    assert np.array_equal(got, decode_sum(r.expected_total(), r.params.scale_bits))
    plain = np.sum([r.updates[i] for i in r.sent_masked], axis=0)
    assert np.max(np.abs(got - plain)) <= len(r.sent_masked) * 2.0 ** -(r.params.scale_bits + 1)
    # every browser that was still there ran the whole protocol in Pyodide
    done = in_browser - {1, 5, 8, 2}
    assert {i for i in in_browser if r.clients[i].state is ClientState.DONE} == done
    # nothing the server received correlates with a worker's plaintext update
    for i, frame in r.masked_frames.items():
        masked = np.frombuffer(frame[-4 * r.d :], dtype="<u4").astype(np.float64)
        plain_i = np.frombuffer(encode(r.updates[i], r.clip, r.params.scale_bits), dtype="<u4")
        corr = abs(np.corrcoef(masked, plain_i.astype(np.float64))[0, 1])
        assert corr < 0.15, (i, corr)  # about 1/sqrt(d) for independent vectors
    assert all(int(i) in in_browser for i in spent)
    print("per browser client, ms in Pyodide:", {i: round(ms) for i, ms in sorted(spent.items())})
