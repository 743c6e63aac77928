"""Strict JSON for everything the coordinator shows operators: no ``NaN``, no ``Infinity``.

Python's :func:`json.dumps` writes ``NaN`` and ``Infinity`` by default, which are not JSON:
strict parsers (browsers' ``JSON.parse``, ``jq``, Go, Rust) refuse the whole document. Figures
that could be non-finite are made finite *before* output, by :func:`finite`: a float that is
NaN or ±infinity becomes ``null``, everywhere in the value, whatever the key (an average that
overflowed, an unbounded ε, an ``inf`` in an old state file or a task's TOML). Then
:func:`dumps` writes with ``allow_nan=False``, so that a non-finite value that slipped past
:func:`finite` would raise ``ValueError`` (an error answer) instead of going out as invalid JSON.

Used by the admin API, the dashboard's data and its server-sent events, ``/healthz``, the error
shape and ``dandelion task show|list --json``. Standard library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "finite"]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±infinity) replaced by None, recursively
    through dicts, lists and tuples (tuples become lists). Other values are returned as they
    are; nothing raises."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``finite(value)``; keyword arguments go to :func:`json.dumps`.

    Raises TypeError for a value JSON cannot hold (as :func:`json.dumps` does)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
