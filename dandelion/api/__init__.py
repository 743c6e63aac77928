"""HTTP edges of the one aiohttp application beside the worker WebSocket: the worker bundle."""

from __future__ import annotations

from .bundle import BUNDLE_PREFIX, add_bundle_routes, content_type_of

__all__ = ["BUNDLE_PREFIX", "add_bundle_routes", "content_type_of"]
