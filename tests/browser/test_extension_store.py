"""The extension as the Chrome Web Store would take it: Manifest V3 forbids remotely hosted
code, so everything the extension runs must be inside it.

Three proofs. The built folder holds exactly the files we mean to ship (the JS, HTML, CSS and
icons, the Pyodide runtime, the lock file and the worker wheel), and the wheel holds exactly
this checkout's worker modules. The manifest asks for nothing it does not use, and its content
security policy lets extension pages run scripts and WebAssembly from the extension alone and
connect nowhere but the extension, a WebSocket and https (the public model endpoint, whose
weights are data). And in Chromium — loaded through DevTools
after a recorder attached to every target, so even the offscreen document's Web Worker is
watched from its first instruction — the extension trains a round for a real coordinator while
every file it loads comes from its own ``chrome-extension://`` origin and the only request that
leaves it is the WebSocket to that coordinator, as the network stack's own log confirms.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from playwright.async_api import BrowserContext, async_playwright

import dandelion
from dandelion.bundle import BundleInfo, assemble_extension, find_pyodide
from dandelion.bundle.wheel import worker_files

from .harness import CHROMIUM_ARGS, PageServer, RequestLog, extension_chromium, poll, task_toml
from .traffic import TargetRecorder, netlog_requests

HORIZON_DAYS = 1e-5  # visits older than a second are training data (see test_extension.py)
PERMISSIONS = ["history", "tabs", "storage", "offscreen", "alarms"]
OPTIONAL_PERMISSIONS = ["bookmarks"]  # asked for on the options page, on the user's click
MANIFEST_KEYS = {
    *("manifest_version", "name", "short_name", "version", "description"),
    *("minimum_chrome_version", "icons", "permissions", "optional_permissions"),
    *("background", "options_ui", "action", "content_security_policy"),
}
# Every source a directive of the extension pages' CSP may name: the extension itself, and
# for connect-src a WebSocket to the coordinator the user chose (any host, hence the scheme)
# and https, for the model document and weights predict() fetches from the public endpoint.
# Plain http only in a development build with a loopback coordinator, never in this one.
CSP_SOURCES = {"'self'", "'none'", "'wasm-unsafe-eval'"}
CSP_CONNECT_SOURCES = {"'self'", "ws:", "wss:", "https:"}


def _expected_files() -> set[str]:
    """What a build must hold, spelled out here rather than taken from the builder."""
    version = json.loads((find_pyodide() / "package.json").read_text())["version"]
    runtime = f"worker/pyodide-{version}"
    wheel = f"dandelion_worker-{dandelion.__version__}-py3-none-any.whl"
    return {
        *("manifest.json", "config.json", "background.js", "settings.js", "signals.js"),
        *("offscreen.html", "offscreen.js", "options.html", "options.js", "options.css"),
        *(f"icons/icon-{size}.png" for size in (16, 32, 48, 128)),
        *("worker/bundle.json", "worker/dandelion.mjs", "worker/dandelion-worker.mjs"),
        *(f"{runtime}/{name}" for name in ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm")),
        *(f"{runtime}/{name}" for name in ("python_stdlib.zip", "package.json")),
        f"{runtime}/pyodide-lock.json",
        f"{runtime}/{wheel}",
    }


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BundleInfo:
    """A store build: no coordinator built in (the user enters one on the options page)."""
    return assemble_extension(tmp_path_factory.mktemp("store") / "extension")


def _csp(manifest: dict[str, Any]) -> dict[str, list[str]]:
    policy = manifest["content_security_policy"]
    assert set(policy) == {"extension_pages"}, policy  # no "sandbox" pages with their own rules
    directives: dict[str, list[str]] = {}
    for part in policy["extension_pages"].split(";"):
        name, *sources = part.split()
        assert name not in directives, f"{name} twice"
        directives[name] = sources
    return directives


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_build_holds_exactly_the_files_we_ship(built: BundleInfo) -> None:
    folder = built.path
    assert _files(folder) == _expected_files()
    assert set(built.files) == _expected_files()
    assert json.loads((folder / "config.json").read_text()) == {"coordinatorUrl": None}
    # The bundle's own manifest lists (and hashes) every other file of the worker folder.
    bundle = json.loads((folder / "worker" / "bundle.json").read_text())
    worker = {name.removeprefix("worker/") for name in _expected_files() if "worker/" in name}
    assert set(bundle["files"]) == worker - {"bundle.json"}
    for name, entry in bundle["files"].items():
        assert built.files[f"worker/{name}"]["sha256"] == entry["sha256"], name
    # The wheel is the only Python the worker runs beside Pyodide's standard library: this
    # checkout's worker modules, byte for byte, and the wheel's metadata.
    with zipfile.ZipFile(folder / "worker" / bundle["worker"]["wheel"]) as wheel:
        members = {name: wheel.read(name) for name in wheel.namelist()}
    modules = dict(worker_files())
    info_dir = f"dandelion_worker-{dandelion.__version__}.dist-info/"
    assert {n for n in members if not n.startswith(info_dir)} == set(modules)
    assert {n.removeprefix(info_dir) for n in members if n.startswith(info_dir)} == {
        "METADATA",
        "WHEEL",
        "RECORD",
        "top_level.txt",
    }
    for name, path in modules.items():
        assert members[name] == path.read_bytes(), name
    print(f"extension: {built.total_bytes / 1e6:.1f} MB in {len(built.files)} files")


def test_the_manifest_asks_for_what_it_uses_and_allows_no_remote_code(built: BundleInfo) -> None:
    folder = built.path
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    # Nothing beyond these keys: no host permissions (a WebSocket from an extension page needs
    # none), no content scripts, no pages others may load, no update URL of our own.
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["permissions"] == PERMISSIONS
    assert manifest["optional_permissions"] == OPTIONAL_PERMISSIONS
    code = "\n".join(p.read_text() for p in folder.glob("*.js"))
    for permission in PERMISSIONS + OPTIONAL_PERMISSIONS:
        assert f"chrome.{permission}." in code, f"{permission} is asked for but not used"

    csp = _csp(manifest)
    assert csp["default-src"] == ["'self'"]  # what no directive names falls back to this
    assert csp["script-src"] == ["'self'", "'wasm-unsafe-eval'"]  # Pyodide compiles wasm
    assert csp["object-src"] == ["'none'"]
    assert set(csp["connect-src"]) == CSP_CONNECT_SOURCES
    for name, sources in csp.items():
        allowed = CSP_CONNECT_SOURCES if name == "connect-src" else CSP_SOURCES
        assert set(sources) <= allowed, (name, sources)

    # Every file the manifest names is in the folder; the icons are PNGs of their size.
    named = {manifest["background"]["service_worker"], manifest["options_ui"]["page"]}
    icons = {**manifest["icons"], **manifest["action"]["default_icon"]}
    for size, name in icons.items():
        assert _png_size(folder / name) == (int(size), int(size)), name
    assert named <= _files(folder)
    assert set(manifest["icons"]) == {"16", "32", "48", "128"}

    # The pages load their scripts and styles from the extension, by relative path, and carry
    # no inline script (which the CSP would refuse anyway).
    for page in folder.glob("*.html"):
        html = page.read_text()
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not urlsplit(ref).scheme and (folder / ref).is_file(), (page.name, ref)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page.name
        assert not re.search(r"\son[a-z]+=", html), page.name
    static_import = re.compile(r'^\s*(?:import|export)\b[^"]*?from\s+"([^"]+)"', re.M)
    for script in [*folder.glob("*.js"), *(folder / "worker").glob("*.mjs")]:
        for spec in static_import.findall(script.read_text()):
            assert spec.startswith("./"), (script.name, spec)


@asynccontextmanager
async def _chromium(profile: Path, netlog: Path) -> AsyncIterator[BrowserContext]:
    """Chromium with no extension yet, a second DevTools port for the recorder and a NetLog.
    ``Extensions.loadUnpacked`` needs --enable-unsafe-extension-debugging."""
    async with async_playwright() as pw:
        context = await extension_chromium(
            pw,
            profile,
            [
                *CHROMIUM_ARGS,
                "--enable-unsafe-extension-debugging",
                "--remote-debugging-port=0",
                f"--log-net-log={netlog}",
            ],
        )
        try:
            yield context
        finally:
            await context.close()  # Chromium finishes the NetLog as it exits


async def _load_unpacked(context: BrowserContext, folder: Path) -> str:
    assert context.browser is not None
    cdp = await context.browser.new_browser_cdp_session()
    loaded = await cdp.send("Extensions.loadUnpacked", {"path": str(folder)})
    return str(loaded["id"])


def _local(url: str) -> str:
    """The file a ``chrome-extension://`` URL names, relative to the extension's folder."""
    return unquote(urlsplit(url).path).lstrip("/")


async def _blocked(page: Any, attempt: str) -> str:
    """Run ``attempt`` (JS that makes a promise) in ``page``: the CSP directive that refused
    it, or "" if none did. (DevTools evaluates past the page's CSP; what ``attempt`` loads
    does not.)"""
    return str(
        await page.evaluate(
            f"""(async () => {{
                let directive = "";
                const seen = (e) => {{ directive = e.effectiveDirective; }};
                document.addEventListener("securitypolicyviolation", seen);
                try {{ await {attempt}; }} catch {{}}
                await new Promise((r) => setTimeout(r, 200));
                document.removeEventListener("securitypolicyviolation", seen);
                return directive;
            }})()"""
        )
    )


async def test_everything_the_extension_runs_is_inside_it(
    coordinator: Any, built: BundleInfo, tmp_path: Path, requests: RequestLog
) -> None:
    coord = await coordinator(task_toml(goal=1, min_reports=1, horizon_days=HORIZON_DAYS))
    shipped = _files(built.path)
    site = PageServer("<!doctype html><title>home</title>", {})
    await site.start()
    netlog = tmp_path / "netlog.json"
    try:
        async with _chromium(tmp_path / "profile", netlog) as context:
            context.on("request", requests.record)
            recorder = await TargetRecorder.connect(tmp_path / "profile")
            extension_id = await _load_unpacked(context, built.path)
            origin = f"chrome-extension://{extension_id}/"

            browsing = await context.new_page()
            for name in ["news", "mail", "news", "docs", "news", "shop"]:
                await browsing.goto(f"{site.url}visit/{name}")
            await asyncio.sleep(2 * HORIZON_DAYS * 86400 + 1.0)

            options = await context.new_page()
            await options.goto(f"{origin}options.html")
            # Built without an address: the page asks for one before the user can take part.
            await poll(
                options,
                "[document.querySelector('#opt-in').disabled,"
                " document.querySelector('#consent-text').textContent]",
                lambda shown: shown[0] is True and "enter the coordinator's address" in shown[1],
                timeout=10,
                what="the options page to ask for an address",
            )
            await options.fill("#coordinator-url", coord.ws)
            await options.click("#coordinator-save")
            await poll(
                options,
                "document.querySelector('#opt-in').disabled",
                lambda disabled: disabled is False,
                timeout=10,
                what="the address to be saved",
            )
            await options.click("#opt-in")
            await poll(
                options,
                "document.querySelector('#updates').textContent",
                lambda updates: updates not in ("", "0"),
                timeout=120,
                what="the options page to show an accepted update",
            )
            assert coord.sql("select worker_id from events where event = 'reported'")
            ours = recorder.family(origin)
            made = recorder.requests_of(ours)
            everything = list(recorder.requests)

            # The policy is in force, not only written: an extension page can neither fetch
            # from the coordinator's plain-http side (a store build allows https only; the
            # coordinator's /models answers with CORS headers, so only the CSP stands in the
            # way) nor import the worker bundle it serves (with CORS headers, too).
            fetched = f"fetch({json.dumps(coord.http + '/healthz')}, {{mode: 'no-cors'}})"
            assert await _blocked(options, fetched) == "connect-src"
            imported = f"import({json.dumps(coord.http + '/worker/dandelion.mjs')})"
            assert await _blocked(options, imported) == "script-src-elem"
            await recorder.close()
    finally:
        await site.stop()

    # The recorder watched every part of the extension from its start: the service worker,
    # the options page, the offscreen document and the Web Worker that runs Pyodide.
    kinds = {t.type for t in ours}
    assert {"service_worker", "page", "worker"} <= kinds, [(t.type, t.url) for t in ours]
    assert all(t.recorded for t in ours), [(t.type, t.url) for t in ours if not t.recorded]
    loaded = {_local(r.url) for r in made if r.url.startswith(origin)}
    pyodide = f"worker/pyodide-{built.pyodide_version}"
    runtime = {"settings.js", "options.js", "offscreen.html", "offscreen.js", "worker/bundle.json"}
    runtime |= {f"{pyodide}/{name}" for name in ("pyodide.mjs", "pyodide.asm.wasm", built.wheel)}
    runtime |= {f"{pyodide}/python_stdlib.zip"}
    assert runtime <= loaded, sorted(runtime - loaded)

    # Every file it loaded came from its own origin and is one of the files it ships; the one
    # request that left it is the WebSocket to the coordinator.
    outside = [(r.kind, r.url) for r in made if not r.url.startswith(origin)]
    assert outside and set(outside) == {("WebSocket", coord.ws)}, outside
    assert loaded <= shipped, sorted(loaded - shipped)
    assert _files(built.path) == shipped  # and it wrote nothing into its own folder
    # Nothing in the browser, extension or not, reached past this machine.
    for request in everything:
        host = urlsplit(request.url).hostname
        if urlsplit(request.url).scheme in ("http", "https", "ws", "wss"):
            assert host == "127.0.0.1", request
    assert requests.outside_loopback() == []

    # The network stack agrees: the requests the extension's origin started are WebSockets to
    # the coordinator (the browser's own background requests say "not an origin").
    network = netlog_requests(netlog)
    mine = origin.rstrip("/")
    by_extension = {r.url for r in network if mine in (r.initiator, *r.isolation_key.split())}
    assert by_extension == {coord.ws}, by_extension
    assert any(r.url.startswith(site.url) for r in network)  # the log did record requests
