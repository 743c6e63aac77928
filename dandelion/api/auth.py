"""Bearer tokens for the admin API, the dashboard's data and ``/metrics``.

A token is made once (``dandelion token create NAME``), shown once, and stored only as its
SHA-256 — enough for a random 256-bit secret, which no dictionary holds. A request proves
itself with ``Authorization: Bearer <token>``; anything else on a protected path is a 401 in
the API's error shape. Tokens are never logged: aiohttp's access log does not print request
headers, and nothing here prints a token or its hash.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..storage import AsyncStore
from .errors import ApiError

__all__ = ["ADMIN", "PROTECTED_PREFIXES", "TokenChecker", "bearer_auth", "hash_token", "new_token"]

TOKEN_PREFIX = "dnd_"
#: Everything under these paths needs a token.
PROTECTED_PREFIXES = ("/api/", "/metrics")
#: The name of the token a request came with.
ADMIN: web.RequestKey[str] = web.RequestKey("dandelion_admin", str)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dandelion"'}
_CACHE_S = 10.0  # a revoked token stops working within this long
_CACHE_MAX = 1024


def new_token() -> str:
    """A fresh token: the prefix (so a leaked one is recognisable) and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenChecker:
    """Looks a token's hash up in storage; remembers good ones briefly."""

    def __init__(self, store: AsyncStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._good: dict[str, tuple[str, float]] = {}

    async def name_of(self, token: str) -> str | None:
        digest = hash_token(token)
        cached = self._good.get(digest)
        now = self.clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        name: str | None = await self.store.read(lambda s: s.admin_token_name(digest))
        if name is not None:
            if len(self._good) >= _CACHE_MAX:
                self._good.clear()
            self._good[digest] = (name, now + _CACHE_S)
        else:
            self._good.pop(digest, None)
        return name


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_auth(
    checker: Callable[[], TokenChecker],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: protected paths need a valid token (the token's name goes in
    ``request[ADMIN]``)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PROTECTED_PREFIXES) or request.method == "OPTIONS":
            return await handler(request)
        token = _bearer(request)
        if token is None:
            raise ApiError(
                401, "this needs an admin token: Authorization: Bearer <token>", headers=_CHALLENGE
            )
        name = await checker().name_of(token)
        if name is None:
            raise ApiError(401, "the admin token is not valid (or was revoked)", headers=_CHALLENGE)
        request[ADMIN] = name
        return await handler(request)

    return middleware
