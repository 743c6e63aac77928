"""The Manifest V3 extension, loaded unpacked into Chromium (a persistent context: plain
``launch()`` starts no extension service worker): nothing runs before the opt-in; after it,
the browser's real history (made here by visiting local pages) trains a model whose update a
real coordinator accepts; the opt-out reaches the coordinator, stops the worker and leaves no
Dandelion state in the browser."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from dandelion.bundle import assemble_extension

from .harness import CHROMIUM_ARGS, PageServer, RequestLog, chromium_path, poll, task_toml

# Visits older than the horizon become examples: 1e-5 days is under a second, so the pages
# visited a moment ago are already training data.
HORIZON_DAYS = 1e-5


async def _text(page: Any, selector: str) -> str:
    return str(await page.evaluate(f"document.querySelector({selector!r}).textContent"))


async def test_extension_opt_in_trains_and_opt_out_is_recorded(
    coordinator: Any, tmp_path: Path, requests: RequestLog, artifacts: Path
) -> None:
    coord = await coordinator(task_toml(goal=1, min_reports=1, horizon_days=HORIZON_DAYS))
    extension = tmp_path / "extension"
    assemble_extension(extension, coord.ws)
    site = PageServer("<!doctype html><title>home</title>", {})
    await site.start()
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium_path(),
            headless=False,  # CHROMIUM_ARGS carries --headless=new, which runs extensions
            ignore_default_args=["--disable-extensions"],
            args=[
                *CHROMIUM_ARGS,
                f"--disable-extensions-except={extension}",
                f"--load-extension={extension}",
            ],
        )
        try:
            context.on("request", requests.record)
            worker = context.service_workers or [await context.wait_for_event("serviceworker")]
            extension_id = worker[0].url.split("/")[2]

            options = await context.new_page()
            await options.goto(f"chrome-extension://{extension_id}/options.html")
            # Off by default: no consent, no worker, nothing at the coordinator.
            assert "not taking part" in await _text(options, "#consent-text")
            assert await options.is_visible("#opt-in")
            assert not await options.is_visible("#worker")
            assert await options.evaluate("chrome.storage.local.get('consent')") == {}

            # Browse: the history the extension will read once the user opts in.
            browsing = await context.new_page()
            for name in ["news", "mail", "news", "docs", "news", "mail", "shop", "news"]:
                await browsing.goto(f"{site.url}visit/{name}")
            await asyncio.sleep(2 * HORIZON_DAYS * 86400)
            await asyncio.sleep(1.0)
            assert coord.sql("select count(*) from events") == [(0,)]

            await options.bring_to_front()
            await options.click("#opt-in")
            state = await poll(
                options,
                "({state: document.querySelector('#state').textContent,"
                " updates: document.querySelector('#updates').textContent,"
                " last: document.querySelector('#last-update').textContent,"
                " rounds: document.querySelector('#rounds').textContent})",
                lambda s: s["updates"] not in ("", "0"),
                timeout=120,
                what="the options page to show an accepted update",
            )
            assert int(state["rounds"]) >= 1
            assert state["last"].endswith("(just now)"), state
            assert "Connected to the coordinator" in state["state"], state
            assert "taking part since" in await _text(options, "#consent-text")
            await options.screenshot(path=str(artifacts / "extension-options-opted-in.png"))

            reported = coord.sql("select worker_id from events where event = 'reported'")
            assert reported, coord.log()
            worker_id = reported[0][0]
            assert coord.sql("select state from consent where worker_id = ?", worker_id) == [
                ("opted_in",)
            ]
            stored = await options.evaluate("chrome.storage.local.get(null)")
            assert stored["consent"] == "opted_in"
            assert stored["kv"], stored  # the worker's pseudonymous id lives here

            await options.click("#opt-out")
            await poll(
                options,
                "document.querySelector('#consent-text').textContent",
                lambda t: "coordinator was told" in t,
                timeout=30,
                what="the options page to confirm the opt-out",
            )
            assert coord.sql("select state from consent where worker_id = ?", worker_id) == [
                ("opted_out",)
            ]
            opted_out = coord.sql(
                "select at from events where event = 'opted_out' and worker_id = ?", worker_id
            )
            assert len(opted_out) == 1
            # Stopped: no offscreen document, nothing of Dandelion's left in the browser, and
            # the coordinator hears nothing more from this worker.
            contexts = await options.evaluate(
                "chrome.runtime.getContexts({contextTypes: ['OFFSCREEN_DOCUMENT']})"
            )
            assert contexts == []
            assert await options.evaluate("chrome.storage.local.get(null)") == {}
            assert not await options.is_visible("#worker")
            await options.screenshot(path=str(artifacts / "extension-options-opted-out.png"))
            await asyncio.sleep(3)
            later = coord.sql(
                "select event from events where worker_id = ? and at > ?",
                worker_id,
                opted_out[0][0],
            )
            assert later == [], later
        finally:
            await context.close()
            await site.stop()
    assert any(u.startswith("chrome-extension://") for u in requests.urls)
    assert requests.outside_loopback() == []
