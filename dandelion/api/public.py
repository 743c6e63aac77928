"""The public model endpoints: a task's released model as data, without a token.

    GET /models/{name}                  the public model document (JSON)
    GET /models/{name}/{version}.f32    that version's weights: float32, little-endian

A released model is a public artefact: a page or an extension fetches it and scores the
browser's own signals with it (``browser_worker.predict.predict``: the document says which
objective and model read the weights; their code ships inside the worker wheel, never here).
Both answers may be cached (the document for a minute, the weights of a version for good:
they never change) and read from any origin (``Access-Control-Allow-Origin: *``); each has an
ETag, and a conditional request that matches it is answered 304.

Rules of this file: it is the one place that decides which versions are published.
:func:`published` says so for one version: the initial model (version 0, made by no round) or
a version made by a round of at least ``monitor_k`` reports — the rule by which the admin API
shows a round's figures (``stats.shows_figures``); a version made from fewer reports is
withheld like those figures are. The document names the newest published version. A task whose
file says ``public_model = false`` publishes nothing (404), nor does an unknown task. The
document's time is bucketed like every time the API shows (``monitor_bucket_s``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..export import ExportError, Release, public_document
from ..export.release import UnknownModelError
from ..storage import RoundRecord, StateStore
from .admin import CONTEXT, AdminContext
from .errors import ApiError
from .stats import bucket, shows_figures
from .strict_json import dumps

__all__ = ["PUBLIC_PREFIX", "add_public_routes", "public_headers", "published"]

PUBLIC_PREFIX = "/models/"
_DOCUMENT_CACHE = "public, max-age=60"
_WEIGHTS_CACHE = "public, max-age=31536000, immutable"
_CROSS_ORIGIN = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
_MAX_VERSION = 2**53 - 1
_CACHED = 256  # documents remembered (a version's document never changes)


def published(made_in: int, made_by: RoundRecord | None, k: int) -> bool:
    """Whether a model version made in round ``made_in`` (0: the initial model) may be served:
    the initial model, or one whose round ``made_by`` had at least ``k`` reports."""
    if made_in == 0:
        return True
    return made_by is not None and shows_figures(made_by.reported, k)


def weights_path(name: str, version: int) -> str:
    return f"{PUBLIC_PREFIX}{name}/{version}.f32"


def _etag(digest: str) -> str:
    return f'"{digest}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, as for GET)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))


def _public_config(s: StateStore, name: str) -> dict[str, Any]:
    """The stored configuration of a task that publishes its model; raises ApiError 404."""
    record = s.get_task(name)
    if record is None:
        raise ApiError(404, f"no task named {name!r}")
    if not record.config.get("public_model", True):
        raise ApiError(404, f"task {name!r} does not publish its model (public_model = false)")
    return record.config


class PublicModels:
    """The two routes, with a small memory of documents already made (per version)."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        # (task, version, created_at) -> (body, its ETag)
        self._documents: dict[tuple[str, int, float], tuple[bytes, str]] = {}

    def _document(self, s: StateStore, name: str) -> tuple[bytes, str]:
        """Runs in the store's reader thread: the document of the newest published version,
        and its ETag."""
        settings = self.context.settings
        config = _public_config(s, name)
        for info in sorted(s.list_model_versions(name), key=lambda v: -v.version):
            made_by = s.get_round(name, info.round) if info.round else None
            if published(info.round, made_by, settings.monitor_k):
                break
        else:
            raise ApiError(404, f"task {name!r} has no published model version yet")
        key = (name, info.version, info.created_at)
        cached = self._documents.get(key)
        if cached is not None:
            return cached
        version = s.get_model_version(name, info.version)
        if version is None:  # pragma: no cover - listed a moment ago, versions are not deleted
            raise ApiError(404, f"task {name!r} has no model version {info.version}")
        try:
            release = Release.of(config, version)
            digest = release.sha256
            document = public_document(
                release,
                weights_url=weights_path(name, release.version),
                sha256=digest,
                created_at=bucket(release.created_at, settings.monitor_bucket_s),
            )
        except UnknownModelError:
            # created with a package this coordinator's bundle lacks: it is not run here
            raise ApiError(
                503,
                f"task {name!r} is not run by this coordinator: its model is not in the "
                "served bundle",
            ) from None
        except ExportError as exc:
            raise ApiError(500, f"task {name!r}: {exc}") from None
        body = dumps(document).encode()
        made = (body, _etag(hashlib.sha256(body).hexdigest()[:32]))
        if len(self._documents) >= _CACHED:
            self._documents.clear()
        self._documents[key] = made
        return made

    async def document(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body, etag = await self.context.store.read(lambda s: self._document(s, name))
        headers = {"ETag": etag, "Cache-Control": _DOCUMENT_CACHE}
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def weights(self, request: web.Request) -> web.StreamResponse:
        name, raw = request.match_info["name"], request.match_info["version"]
        number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 16 else -1
        if not 0 <= number <= _MAX_VERSION:
            raise ApiError(400, f"a model version is an integer in [0, 2^53 - 1], not {raw!r}")
        k = self.context.settings.monitor_k

        def read(s: StateStore) -> tuple[bytes, str]:
            _public_config(s, name)
            version = s.get_model_version(name, number)
            if version is not None:
                made_by = s.get_round(name, version.round) if version.round else None
                if published(version.round, made_by, k):
                    return version.params, hashlib.sha256(version.params).hexdigest()
            raise ApiError(404, f"task {name!r} has no published model version {number}")

        params, digest = await self.context.store.read(read)
        etag = _etag(digest)
        headers = {"ETag": etag, "Cache-Control": _WEIGHTS_CACHE}
        if _matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        headers["Content-Disposition"] = f'inline; filename="{name}-v{number}.f32"'
        return web.Response(body=params, content_type="application/octet-stream", headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def public_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer under ``/models/``, errors too, may be read from any origin."""
    if not request.path.startswith(PUBLIC_PREFIX):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(_CROSS_ORIGIN)
        raise
    response.headers.update(_CROSS_ORIGIN)
    return response


def add_public_routes(app: web.Application) -> None:
    """The routes; they read the admin API's context (store, settings) but need no token."""
    routes = PublicModels(app[CONTEXT])
    app.router.add_get(PUBLIC_PREFIX + "{name}", routes.document)
    app.router.add_get(PUBLIC_PREFIX + "{name}/{version}.f32", routes.weights)
