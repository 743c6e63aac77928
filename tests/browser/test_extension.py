"""The Manifest V3 extension, loaded unpacked into Chromium (a persistent context: plain
``launch()`` starts no extension service worker): nothing runs and nothing is recorded before
the opt-in; after it, the browser's real history (made here by visiting local pages) trains a
model whose update a real coordinator accepts, and tab switches are recorded; the opt-out
reaches the coordinator, stops the worker and leaves no Dandelion state in the browser, and
switching tabs afterwards records nothing again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from dandelion.bundle import assemble_extension

from ..conftest import scaled
from .harness import CHROMIUM_ARGS, PageServer, RequestLog, extension_chromium, poll, task_toml

# Visits older than the horizon become examples: 1e-5 days is under a second, so the pages
# visited a moment ago are already training data.
HORIZON_DAYS = 1e-5


async def _text(page: Any, selector: str) -> str:
    return str(await page.evaluate(f"document.querySelector({selector!r}).textContent"))


async def _switch(*pages: Any, seconds: float = 0.3) -> None:
    """Bring each page to the front in turn, for ``seconds`` each."""
    for page in pages:
        await page.bring_to_front()
        await asyncio.sleep(seconds)


async def _everything(page: Any) -> dict[str, Any]:
    """All the extension keeps in chrome.storage, local and session (the page in front)."""
    local, session = await page.evaluate(
        "Promise.all([chrome.storage.local.get(null), chrome.storage.session.get(null)])"
    )
    return {**local, **session}


async def test_extension_opt_in_trains_and_opt_out_is_recorded(
    coordinator: Any, tmp_path: Path, requests: RequestLog, artifacts: Path
) -> None:
    coord = await coordinator(task_toml(goal=1, min_reports=1, horizon_days=HORIZON_DAYS))
    extension = tmp_path / "extension"
    assemble_extension(extension, coord.ws)
    site = PageServer("<!doctype html><title>home</title>", {})
    await site.start()
    async with async_playwright() as pw:
        context = await extension_chromium(pw, tmp_path / "profile", CHROMIUM_ARGS, extension)
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
            # Bookmarks are an optional permission, not granted: the page offers to ask for it
            # (the browser's own prompt, which no one can accept in headless Chromium).
            assert "Not allowed" in await _text(options, "#bookmarks-state")
            assert await options.is_visible("#bookmarks-allow")
            assert not await options.is_visible("#bookmarks-revoke")

            # Browse: the history the extension will read once the user opts in. Tabs are
            # opened, switched and navigated, and none of it is recorded: nothing is stored.
            browsing = await context.new_page()
            for name in ["news", "mail", "news", "docs", "news", "mail", "shop", "news"]:
                await browsing.goto(f"{site.url}visit/{name}")
            other = await context.new_page()
            await other.goto(f"{site.url}visit/docs")
            await _switch(browsing, other, browsing, options)
            await asyncio.sleep(2 * HORIZON_DAYS * 86400)
            await asyncio.sleep(1.0)
            assert coord.sql("select count(*) from events") == [(0,)]
            assert await _everything(options) == {}

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
            # Taking part, tab switches are recorded and the time each page was in front.
            await _switch(other, browsing, options)
            stored = await poll(
                options,
                "chrome.storage.local.get(null)",
                lambda s: len(s.get("pageTimes", [])) >= 2,
                timeout=10,
                what="the extension to record page times",
            )
            assert stored["consent"] == "opted_in"
            assert stored["kv"], stored  # the worker's pseudonymous id lives here
            assert [p["url"] for p in stored["pageTimes"]] == [
                f"{site.url}visit/docs",
                f"{site.url}visit/news",
            ]
            assert all(p["ms"] > 0 for p in stored["pageTimes"]), stored["pageTimes"]
            assert [e["kind"] for e in stored["tabEvents"]] == ["activated"] * 3

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
            assert await _everything(options) == {}
            assert not await options.is_visible("#worker")
            await options.screenshot(path=str(artifacts / "extension-options-opted-out.png"))
            await _switch(browsing, other, options)
            await asyncio.sleep(3)  # longer than the 2 s in which new items would be pushed
            later = coord.sql(
                "select event from events where worker_id = ? and at > ?",
                worker_id,
                opted_out[0][0],
            )
            assert later == [], later
            assert await _everything(options) == {}  # switching tabs recorded nothing again
        finally:
            await context.close()
            await site.stop()
    assert any(u.startswith("chrome-extension://") for u in requests.urls)
    assert requests.outside_loopback() == []


async def _sql_poll(coord: Any, query: str, *params: Any, timeout: float) -> list[Any]:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        rows = coord.sql(query, *params)
        if rows:
            return rows
        await asyncio.sleep(0.25)
    raise AssertionError(f"nothing for {query} {params}: {coord.log()}")


async def _save_address(page: Any, text: str) -> dict[str, Any]:
    """Type ``text`` into the options page's address field and save; what the page then says."""
    await page.fill("#coordinator-url", text)
    await page.click("#coordinator-save")  # clears the last message before it answers
    said = await poll(
        page,
        "({message: document.querySelector('#coordinator-message').textContent,"
        " invalid: document.querySelector('#coordinator-url').getAttribute('aria-invalid'),"
        " shown: document.querySelector('#coordinator').textContent})",
        lambda said: said["message"] != "",
        timeout=10,
        what=f"the options page to answer {text!r}",
    )
    return dict(said)


async def test_options_page_checks_and_changes_the_coordinator(
    coordinator: Any, tmp_path: Path, requests: RequestLog, artifacts: Path
) -> None:
    """The address built in is the default; the options page refuses what is not ws:// or
    wss://, and a new address while taking part moves the running worker there, under the
    same pseudonymous id."""
    task = task_toml(goal=1, min_reports=1, horizon_days=HORIZON_DAYS)
    first, second = await coordinator(task), await coordinator(task)
    extension = tmp_path / "extension"
    assemble_extension(extension, first.ws)
    site = PageServer("<!doctype html><title>home</title>", {})
    await site.start()
    async with async_playwright() as pw:
        context = await extension_chromium(pw, tmp_path / "profile", CHROMIUM_ARGS, extension)
        try:
            context.on("request", requests.record)
            worker = context.service_workers or [await context.wait_for_event("serviceworker")]
            extension_id = worker[0].url.split("/")[2]
            browsing = await context.new_page()
            for name in ["news", "mail", "news", "docs", "news"]:
                await browsing.goto(f"{site.url}visit/{name}")
            await asyncio.sleep(2 * HORIZON_DAYS * 86400 + 1.0)

            options = await context.new_page()
            await options.goto(f"chrome-extension://{extension_id}/options.html")
            assert await options.input_value("#coordinator-url") == first.ws
            assert "came with this address" in await _text(options, "#coordinator-source")
            said = await _save_address(options, f"http://127.0.0.1:{first.port}/ws")
            assert "must start with wss:// or ws://, not http://" in said["message"], said
            assert said["invalid"] == "true"
            said = await _save_address(options, "fl.example.org/ws")
            assert "is not an address" in said["message"], said
            assert await options.evaluate("chrome.storage.local.get('coordinatorUrl')") == {}

            await options.click("#opt-in")
            reported = await _sql_poll(
                first, "select worker_id from events where event = 'reported'", timeout=120
            )
            worker_id = reported[0][0]

            said = await _save_address(options, second.ws)
            assert said["message"] == "Saved: the worker is starting again with it.", said
            assert said["invalid"] == "false" and said["shown"] == second.ws, said
            moved = await _sql_poll(
                second,
                "select at from events where event = 'reported' and worker_id = ?",
                worker_id,
                timeout=120,
            )
            assert "You set this address" in await _text(options, "#coordinator-source")
            stored = await options.evaluate("chrome.storage.local.get('coordinatorUrl')")
            assert stored == {"coordinatorUrl": second.ws}
            await options.screenshot(
                path=str(artifacts / "extension-options-coordinator.png"), full_page=True
            )
            # The first coordinator no longer hears from it (it may only free a slot).
            arrived = second.sql(
                "select min(at) from events where event = 'connected' and worker_id = ?",
                worker_id,
            )[0][0]
            assert arrived <= moved[0][0]
            await asyncio.sleep(3)  # longer than the coordinators' pace (come back in 0.5-2 s)
            later = first.sql(
                "select event from events where worker_id = ? and at > ? and event != 'released'",
                worker_id,
                arrived,
            )
            assert later == [], later
        finally:
            await context.close()
            await site.stop()
    assert requests.outside_loopback() == []
