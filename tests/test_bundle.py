"""The worker bundle: what `dandelion bundle` lays out, and how `/worker/` serves it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dandelion.api import add_bundle_routes
from dandelion.bundle import BundleError, assemble_bundle, assemble_extension, find_pyodide
from dandelion.bundle.assemble import _connect_sources
from dandelion.bundle.wheel import build_wheel
from dandelion.cli import main

from .conftest import scaled

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "worker-bundle"
    assemble_bundle(out)
    return out


def _manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "bundle.json").read_text())
    return manifest


def test_bundle_holds_runtime_wheel_lock_and_js(bundle: Path) -> None:
    manifest = _manifest(bundle)
    version = manifest["pyodide"]["version"]
    assert version == json.loads((find_pyodide() / "package.json").read_text())["version"]
    runtime = bundle / f"pyodide-{version}"
    for name in ("pyodide.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"):
        assert (runtime / name).is_file(), name
    assert (bundle / "dandelion.mjs").is_file() and (bundle / "dandelion-worker.mjs").is_file()
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_lock_file_lists_only_our_wheel_with_its_digest(bundle: Path) -> None:
    manifest = _manifest(bundle)
    lock = json.loads((bundle / manifest["pyodide"]["path"] / "pyodide-lock.json").read_text())
    assert list(lock["packages"]) == ["dandelion-worker"]
    package = lock["packages"]["dandelion-worker"]
    wheel = manifest["worker"]["wheel"]
    assert package["file_name"] == Path(wheel).name
    assert package["sha256"] == manifest["files"][wheel]["sha256"]
    assert package["depends"] == []


def test_wheel_holds_the_worker_and_protocol_only_and_is_reproducible(tmp_path: Path) -> None:
    first = build_wheel(tmp_path / "a")
    second = build_wheel(tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    names = zipfile.ZipFile(first.path).namelist()
    assert "browser_worker/browser.py" in names and "dandelion/protocol/frames.py" in names
    assert "browser_worker/host/cpython.py" not in names  # websockets: not for a browser
    assert not [n for n in names if n.startswith(("dandelion/coordinator", "dandelion/storage"))]
    assert any(n.endswith(".dist-info/RECORD") for n in names)


def test_missing_pyodide_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="npm ci"):
        assemble_bundle(tmp_path / "out", tmp_path / "nowhere")


async def _client(bundle_dir: Path) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_bundle_routes(app, str(bundle_dir))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_worker_route_types_caching_and_cors(bundle: Path) -> None:
    client = await _client(bundle)
    try:
        version = _manifest(bundle)["pyodide"]["version"]
        wasm = await client.get(f"/worker/pyodide-{version}/pyodide.asm.wasm")
        assert wasm.status == 200
        assert wasm.headers["Content-Type"] == "application/wasm"
        assert "immutable" in wasm.headers["Cache-Control"]
        assert wasm.headers["Access-Control-Allow-Origin"] == "*"
        mjs = await client.get("/worker/dandelion-worker.mjs")
        assert mjs.headers["Content-Type"].startswith("text/javascript")
        assert mjs.headers["Cache-Control"] == "no-cache"
        etag = mjs.headers["ETag"]
        again = await client.get("/worker/dandelion-worker.mjs", headers={"If-None-Match": etag})
        assert again.status == 304
        lock = await client.get(f"/worker/pyodide-{version}/pyodide-lock.json")
        assert lock.headers["Cache-Control"] == "no-cache"  # changes with our wheel
        for bad in ("/worker/../pyproject.toml", "/worker/%2e%2e/pyproject.toml", "/worker/nope"):
            resp = await client.get(bad)
            assert resp.status == 404, bad
    finally:
        await client.close()


async def test_worker_route_without_a_bundle_says_how_to_build_one(tmp_path: Path) -> None:
    client = await _client(tmp_path / "none")
    try:
        resp = await client.get("/worker/dandelion.mjs")
        assert resp.status == 404
        assert "dandelion bundle" in await resp.text()
    finally:
        await client.close()


def test_extension_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "ext"
    assemble_extension(out, "wss://fl.example.org/ws")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    assert "'wasm-unsafe-eval'" in manifest["content_security_policy"]["extension_pages"]
    assert json.loads((out / "config.json").read_text()) == {
        "coordinatorUrl": "wss://fl.example.org/ws"
    }
    assert _connect_src(out) == STORE_CONNECT
    assert (out / "worker" / "bundle.json").is_file()
    # Nothing is fetched from elsewhere: no absolute http(s) URL in the extension's own code.
    for path in [*out.glob("*.js"), *out.glob("*.html"), *(out / "worker").glob("*.mjs")]:
        assert not re.search(r"https?://", path.read_text()), path
    with pytest.raises(BundleError, match="ws://"):
        assemble_extension(tmp_path / "bad", "http://example.org")
    for bad in ("wss://", "wss://user:secret@fl.example.org/ws", "wss://fl.example.org/ws#x"):
        with pytest.raises(BundleError, match="must name a host"):
            assemble_extension(tmp_path / "bad", bad)


def _connect_src(folder: Path) -> list[str]:
    policy = json.loads((folder / "manifest.json").read_text())["content_security_policy"]
    for directive in policy["extension_pages"].split(";"):
        name, *sources = directive.split()
        if name == "connect-src":
            return sources
    raise AssertionError(f"no connect-src in {policy}")


STORE_CONNECT = ["'self'", "ws:", "wss:", "https:"]


def test_extension_csp_allows_plain_http_only_to_a_loopback_coordinator(tmp_path: Path) -> None:
    """predict() fetches the public model endpoint: https anywhere, and plain http only from
    the coordinator of a development build on this machine."""
    assemble_extension(tmp_path / "dev", "ws://127.0.0.1:8750/ws")
    assert _connect_src(tmp_path / "dev") == [*STORE_CONNECT, "http://127.0.0.1:8750"]
    assert _connect_sources(None) == STORE_CONNECT  # the store build
    assert _connect_sources("ws://localhost:9000/ws") == [*STORE_CONNECT, "http://localhost:9000"]
    for url in (
        "wss://127.0.0.1:8750/ws",  # https: covers it
        "wss://fl.example.org/ws",
        "ws://fl.example.org/ws",  # plain ws to another machine: no plain http with it
        "ws://127.0.0.1.example.org/ws",
        "ws://[::1]:8750/ws",  # no IPv6 literal in a CSP source
    ):
        assert _connect_sources(url) == STORE_CONNECT, url


def test_extension_built_without_a_coordinator_leaves_the_choice_to_the_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = assemble_extension(tmp_path / "ext")
    assert json.loads((tmp_path / "ext" / "config.json").read_text()) == {"coordinatorUrl": None}
    assert _connect_src(tmp_path / "ext") == STORE_CONNECT
    # The description covers the whole extension, not only the bundle inside it.
    assert {"manifest.json", "icons/icon-128.png", "worker/bundle.json"} <= set(info.files)
    assert info.total_bytes == sum(p.stat().st_size for p in info.path.rglob("*") if p.is_file())
    # The CLI builds the same when no --coordinator-url is given.
    assert main(["bundle", "--extension", "--out", str(tmp_path / "cli"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == len(info.files)
    assert json.loads((tmp_path / "cli" / "config.json").read_text()) == {"coordinatorUrl": None}


def test_cli_bundle_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", "--out", str(tmp_path / "wb"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(tmp_path / "wb")
    assert info["wheel"].startswith("dandelion_worker-") and info["bytes"] > 5_000_000
    assert main(["bundle", "--out", str(tmp_path / "x"), "--pyodide", str(tmp_path)]) == 2


def test_a_failed_build_leaves_the_existing_bundle_and_extension_untouched(
    tmp_path: Path,
) -> None:
    """Building into a good bundle's folder with a package the worker cannot import (numpy at
    module level) is refused, and the folder keeps the old bundle, byte for byte."""
    heavy = tmp_path / "pkg" / "heavy"
    heavy.mkdir(parents=True)
    (heavy / "__init__.py").write_text("import numpy\n")
    for flags in ([], ["--extension"]):
        out = tmp_path / ("ext" if flags else "wb")
        assert main(["bundle", "--out", str(out), *flags]) == 0
        before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        failed = subprocess.run(
            [sys.executable, "-m", "dandelion", "bundle", "--out", str(out), *flags,
             "--with", str(heavy)],
            capture_output=True, text=True, timeout=scaled(120),
        )  # fmt: skip
        assert failed.returncode == 2, failed.stderr
        assert "No module named 'numpy'" in failed.stderr and "Traceback" not in failed.stderr
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert after == before
    # Nothing half-built is left beside them.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "pkg", "wb"]
