"""The update a worker sends is the same in the browser and in CPython: the same code
(``browser_worker.reference.reference_round``: signals → examples → local SGD → clipping →
frame) on the same model, data and seed, in Pyodide inside Chromium and in this interpreter.

Tolerance, stated: the frame — the float32 bytes a worker actually sends — must be identical.
In full float64 precision the values may differ in the last places, never more than 1e-9
relative (measured: 1.2e-15 for the logistic regression, 6.3e-13 for the MLP, whose errors
grow through its layers; float32 resolves 6e-8): both runtimes do IEEE-754 double
arithmetic in the same order, but Pyodide's libm (musl, compiled to WebAssembly) and glibc's
round ``exp``/``log``/``sin`` differently in the last bit now and then.
The inputs (data, time, seeds) are fixed, so the test is deterministic."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from browser_worker.reference import reference_round

from .harness import PageServer, open_pyodide, pyodide_page, synthetic_signals, task_toml

CASES = {
    "logreg": {"kind": "logreg"},
    "mlp": {"kind": "mlp", "hidden": 8},
}
HYPER = {"learning_rate": 0.3, "epochs": 2, "batch_size": 8, "clip_norm": 1.0}


NOW = 1_795_000_000.0  # a fixed "now" (2026-11-18): the features depend on the time of day


def _request(model: dict[str, Any], seed: int) -> str:
    now = NOW
    return json.dumps(
        {
            "signals": synthetic_signals(seed, days=21, end=now),
            "now": now,
            "objective": "revisit_7d",
            "features": {"num_buckets": 32, "horizon_days": 7.0},
            "model": model,
            "hyper": HYPER,
            "seed": seed,
        }
    )


@pytest.mark.parametrize("name", sorted(CASES))
async def test_update_bytes_agree_between_pyodide_and_cpython(
    name: str, coordinator: Any, browser: Any
) -> None:
    coord = await coordinator(task_toml())
    server = PageServer(pyodide_page(coord.http + "/worker/"), {})
    await server.start()
    try:
        page = await open_pyodide(browser, server)
        for seed in (11, 12):
            request = _request(CASES[name], seed)
            in_browser = json.loads(await page.evaluate("(r) => window.__reference(r)", request))
            in_cpython = json.loads(reference_round(request))
            assert in_cpython["examples"] > 50, in_cpython["examples"]  # a real round of data
            assert in_browser["examples"] == in_cpython["examples"]
            assert in_cpython["norm"] > 0
            deltas = zip(in_browser["delta"], in_cpython["delta"], strict=True)
            worst = max(abs(a - b) / max(abs(b), 1e-300) for a, b in deltas)
            assert worst <= 1e-9, f"{name} seed {seed}: relative difference {worst}"
            print(f"{name} seed {seed}: worst relative difference in float64 {worst:.2e}")
            assert in_browser["frame"] == in_cpython["frame"], f"{name} seed {seed}"
            assert math.isclose(in_browser["loss"], in_cpython["loss"], rel_tol=1e-12)
    finally:
        await server.stop()
