"""Serve the worker bundle at ``/worker/`` from the coordinator's own port.

So that no deployment needs a third-party CDN, the coordinator serves what ``dandelion bundle``
built: Pyodide's runtime, our wheel, the lock file and the JS. The types a browser insists on
are set explicitly (``.mjs`` as JavaScript, ``.wasm`` as ``application/wasm`` for streaming
compilation) rather than left to the platform's ``mimetypes`` table. The Pyodide runtime sits in
a folder named for its version, so it is cached for a year (``immutable``); everything else is
revalidated on each use (``no-cache`` with an ETag, answered 304 when unchanged).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

__all__ = ["BUNDLE_PREFIX", "add_bundle_routes", "content_type_of"]

BUNDLE_PREFIX = "/worker/"
_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".html": "text/html",
    ".css": "text/css",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


def content_type_of(name: str) -> str:
    return _TYPES.get(Path(name).suffix, "application/octet-stream")


def _cache_control(relative: str) -> str:
    parts = relative.split("/")
    versioned = len(parts) == 2 and parts[0].startswith("pyodide-")
    mutable = parts[-1] == "pyodide-lock.json" or parts[-1].endswith(".whl")
    return _IMMUTABLE if versioned and not mutable else _REVALIDATE


def add_bundle_routes(app: web.Application, bundle_dir: str) -> None:
    """Route ``/worker/{path}`` to files under ``bundle_dir`` (404 for anything outside it,
    and a 404 that says how to build the bundle when there is none)."""
    root = Path(bundle_dir).resolve()

    async def serve(request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"] or "dandelion.mjs"
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            if not root.is_dir():
                raise web.HTTPNotFound(
                    text=f"no worker bundle in {root}: build it with `dandelion bundle`"
                )
            raise web.HTTPNotFound(text=f"not in the worker bundle: {relative}")
        headers = {
            "Content-Type": content_type_of(path.name),
            "Cache-Control": _cache_control(path.relative_to(root).as_posix()),
            "X-Content-Type-Options": "nosniff",
            # Module workers and wasm are fetched cross-origin by pages on other origins.
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        return web.FileResponse(path, headers=headers)

    app.router.add_get(BUNDLE_PREFIX + "{path:.*}", serve)
