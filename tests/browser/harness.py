"""The real parts the browser tests drive: a `dandelion serve` process, headless Chromium
(Debian's package, through Playwright's ``executable_path``), and a small page server.

Chromium is started so that it cannot reach anything but this machine: host names resolve to
nothing except 127.0.0.1 (``--host-resolver-rules``), background services are off, and every
request the browser makes is recorded so a test can assert none left this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from ..conftest import free_port, scaled

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOCAL_SCHEMES = {"blob", "data", "chrome-extension", "about", "chrome"}


def chromium_path() -> str:
    """Debian's Chromium; a missing browser fails the test (scripts/test installs it)."""
    path = os.environ.get("DANDELION_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not installed: run scripts/test, which installs it with apt")
    return path


async def extension_chromium(
    pw: Any, profile: Path, args: list[str], extension: Path | None = None
) -> Any:
    """Chromium that may run extensions, on a persistent ``profile``; with ``extension``, that
    unpacked extension loaded and no other."""
    loaded = [f"--disable-extensions-except={extension}", f"--load-extension={extension}"]
    return await pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        headless=False,  # CHROMIUM_ARGS carries --headless=new, which runs extensions
        ignore_default_args=["--disable-extensions"],
        args=[*args, *(loaded if extension is not None else [])],
    )


def task_toml(
    name: str = "revisit-7d",
    *,
    goal: int = 1,
    min_reports: int = 1,
    deadline_s: float = 120.0,
    horizon_days: float = 7.0,
    num_buckets: int = 64,
) -> str:
    return f"""
name = "{name}"
objective = "revisit_7d"
[features]
num_buckets = {num_buckets}
horizon_days = {horizon_days}
[model]
kind = "logreg"
[hyper]
learning_rate = 0.1
epochs = 1
batch_size = 16
clip_norm = 5.0
[rounds]
goal = {goal}
over_selection = 1.0
min_reports = {min_reports}
deadline_s = {deadline_s}
"""


@dataclass
class CoordinatorProcess:
    """``dandelion serve`` in its own process, on a free loopback port."""

    workdir: Path
    bundle_dir: Path
    task: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def db(self) -> Path:
        return self.workdir / "state.db"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        task_file = self.workdir / "task.toml"
        task_file.write_text(self.task)
        with (self.workdir / "coordinator.log").open("ab") as log:
            self.proc = self._spawn(task_file, log)
        await self._wait_healthy()

    def _spawn(self, task_file: Path, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "dandelion", "serve", "--port", str(self.port)),
                *("--db", str(self.db), "--task", str(task_file)),
                *("--bundle-dir", str(self.bundle_dir)),
                *("--pace-min-s", "0.5", "--pace-max-s", "2"),
                *self.extra_args,
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + scaled(20)
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"coordinator exited: {self.log()}")
                try:
                    async with http.get(self.http + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"coordinator did not come up: {self.log()}")

    def log(self) -> str:
        path = self.workdir / "coordinator.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the coordinator's state file (WAL: safe while it runs)."""
        import sqlite3

        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            return list(conn.execute(query, params))


def _loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: localhost, or an address in the loopback range."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class RequestLog:
    """Every URL the browser asked for, from pages, workers and extension contexts."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def record(self, request: Any) -> None:
        self.urls.append(request.url)

    def outside_loopback(self) -> list[str]:
        bad = []
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in LOCAL_SCHEMES:
                continue
            if not _loopback(parts.hostname):
                bad.append(url)
        return bad


async def poll(page: Any, expression: str, predicate: Any, timeout: float, what: str) -> Any:
    """Evaluate ``expression`` in ``page`` until ``predicate(value)``; ``page.evaluate`` works
    on extension pages, where ``wait_for_function`` is refused by their CSP."""
    deadline = time.monotonic() + scaled(timeout)
    value = None
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if predicate(value):
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last value: {json.dumps(value)[:2000]}")


def synthetic_signals(seed: int, *, days: float = 28.0, end: float | None = None) -> dict[str, Any]:
    """One synthetic user's history in the shape a page hands to ``start()``, ending now."""
    from dandelion.taskspec.synthetic import SyntheticConfig, generate_history

    end = time.time() if end is None else end
    history = generate_history(seed, days, SyntheticConfig(), end - days * 86400)
    visits = [
        {
            "url": v.url,
            "title": v.title,
            "visitTime": v.visit_time * 1000,
            "transition": v.transition,
        }
        for v in history
    ]
    return {"visits": visits, "tzOffsetMin": 0}


def embed_page(bundle_url: str, ws_url: str, options: dict[str, Any] | None = None) -> str:
    """A page that embeds the worker (``pages/embed.html``) with the bundle and coordinator;
    ``options``: more of ``start()``'s options (JSON)."""
    html = (Path(__file__).parent / "pages" / "embed.html").read_text()
    html = html.replace("{options}", json.dumps(options or {}))
    return html.replace("{bundle}", bundle_url).replace("{ws}", ws_url)


def pyodide_page(bundle_url: str) -> str:
    """A page that loads Pyodide and the worker wheel from the bundle (``pages/pyodide.html``)
    and exposes ``window.__reference(requestJson)``."""
    html = (Path(__file__).parent / "pages" / "pyodide.html").read_text()
    return html.replace("{bundle}", bundle_url)


async def open_pyodide(browser: Any, server: PageServer) -> Any:
    """A new page on ``server`` (serving ``pyodide_page``) once Pyodide has loaded the worker
    wheel; asserts it is Pyodide (Python 3.14) and that nothing failed."""
    page = await browser.new_page()
    await page.goto(server.url)
    await poll(
        page,
        "document.getElementById('state').textContent",
        lambda s: s != "loading",
        timeout=90,
        what="Pyodide to load the worker wheel",
    )
    assert await page.evaluate("window.__error ?? null") is None
    assert (await page.evaluate("window.__python")).startswith("3.14"), "not Pyodide"
    return page


class PageServer:
    """A page on its own origin (another port than the coordinator), as an embedding site
    would be: it loads the worker bundle cross-origin from the coordinator. ``host``: an
    address in the loopback range (127.0.0.2 is another host of this same machine)."""

    def __init__(self, html: str, signals: dict[str, Any], host: str = "127.0.0.1") -> None:
        self.html = html
        self.signals = signals
        self.host = host
        self.port = free_port(host)
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        from aiohttp import web

        async def index(_request: web.Request) -> web.Response:
            return web.Response(text=self.html, content_type="text/html")

        async def signals(_request: web.Request) -> web.Response:
            return web.json_response(self.signals)

        async def no_icon(_request: web.Request) -> web.Response:
            return web.Response(status=204)

        async def visit(request: web.Request) -> web.Response:
            # Pages to browse, so the browser's own history has something in it.
            name = request.match_info["name"]
            body = f"<!doctype html><title>Local page {name}</title><p>Page {name}.</p>"
            return web.Response(text=body, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/signals.json", signals)
        app.router.add_get("/favicon.ico", no_icon)
        app.router.add_get("/visit/{name}", visit)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
