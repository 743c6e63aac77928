"""A page embeds the worker: Pyodide boots in a module Web Worker, the worker checks in to a
real coordinator process, trains on the page's signals, and its update completes a round."""

from __future__ import annotations

from typing import Any

from .harness import PageServer, RequestLog, embed_page, poll, synthetic_signals, task_toml


async def test_page_worker_completes_a_round(
    coordinator: Any, browser: Any, requests: RequestLog
) -> None:
    coord = await coordinator(task_toml(goal=1, min_reports=1))
    server = PageServer(embed_page(coord.http + "/worker/", coord.ws), synthetic_signals(seed=3))
    await server.start()
    try:
        context = await browser.new_context()
        context.on("request", requests.record)
        page = await context.new_page()
        await page.goto(server.url)
        status = await poll(
            page,
            "window.__status",
            lambda s: bool(s) and s.get("updates_accepted", 0) >= 1,
            timeout=90,
            what="the page's worker to have an update accepted",
        )
        assert status["rounds_joined"] >= 1
        assert status["last_update_at"] is not None
        booted = await page.evaluate("window.__booted")
        assert booted["python"].startswith("3.14"), booted  # really Pyodide, not CPython
        log = await page.evaluate("window.__log")
        assert any("accepted" in line for line in log), log

        await poll_round_completed(coord)
        runtimes = coord.sql(
            "select count(*) from events where event = 'reported' and task = 'revisit-7d'"
        )
        assert runtimes[0][0] >= 1
        await context.close()
    finally:
        await server.stop()
    assert requests.urls, "the request log saw nothing: the check would be vacuous"
    assert any("/worker/pyodide-" in u for u in requests.urls)
    assert requests.outside_loopback() == []


async def poll_round_completed(coord: Any) -> None:
    import asyncio
    import time

    from ..conftest import scaled

    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        rows = coord.sql(
            "select round, status, reported from rounds where task = 'revisit-7d' "
            "and status = 'completed'"
        )
        if rows:
            assert rows[0][2] >= 1
            versions = coord.sql("select max(version) from model_versions")
            assert versions[0][0] >= 1  # a new model version was committed from the update
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no completed round; coordinator log: {coord.log()}")
