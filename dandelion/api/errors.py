"""One JSON shape for every error of the admin API, ``/metrics`` and the public model
endpoints (``/models/``)::

    {"error": {"status": 401, "code": "unauthorized", "message": "..."}}

Handlers raise :class:`ApiError`; the :func:`json_errors` middleware also turns aiohttp's own
HTTP errors (404 for an unknown route, 405, 413 ...) on those paths into the same shape, and an
unexpected exception into a 500 that says nothing about the internals. Bodies are strict JSON
(``strict_json.dumps``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from .strict_json import dumps

__all__ = ["API_PREFIXES", "ApiError", "json_error", "json_errors"]

log = logging.getLogger("dandelion.api")

#: Paths whose errors are JSON (the dashboard page and the bundle answer in their own way).
API_PREFIXES = ("/api/", "/metrics", "/models/")
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable machine ``code`` and a sentence."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"error": {"status": status, "code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = (
            exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text
        )
        code = _CODES.get(exc.status, "error")
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return json_error(exc.status, code, message, keep)
    except Exception:
        log.exception("admin API: unexpected error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; the coordinator's log has details")
