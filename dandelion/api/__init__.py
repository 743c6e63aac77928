"""HTTP edges of the one aiohttp application beside the worker WebSocket: the worker bundle.

The names are loaded on first use, so that ``dandelion.api.strict_json`` (which the CLI's task
commands use) can be imported without loading aiohttp.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundle import BUNDLE_PREFIX, add_bundle_routes, content_type_of

__all__ = ["BUNDLE_PREFIX", "add_bundle_routes", "content_type_of"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".bundle", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
