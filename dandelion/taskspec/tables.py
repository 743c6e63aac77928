"""Strict tables for the files people write: task files and population files.

Both loaders call :func:`unknown_key` on every table they read, so a misspelled table or key
anywhere (``[round]``, a top-level ``goal``, ``[features] num_bucket``) is an error naming it
and the nearest valid key, never a setting silently ignored. Standard library only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["nearest", "unknown_key"]


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The name in ``known`` closest to a misspelt ``name`` (difflib's ratio of at least 0.6),
    or None: what every "did you mean" of the project names."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key(where: str, table: Mapping[str, Any], known: Iterable[str]) -> str | None:
    """The error for the first key of ``table`` not in ``known`` (None if there is none):
    ``"{where}{key}: unknown key; did you mean 'x'? (known: …)"``. ``where`` is the table's
    dotted prefix (``"rounds."``; ``""`` for the top level)."""
    valid = sorted(set(known))
    extra = sorted(k for k in table if k not in valid)
    if not extra:
        return None
    key = extra[0]
    near = nearest(str(key), valid)
    hint = f"did you mean {near!r}? " if near else ""
    return f"{where}{key}: unknown key; {hint}(known: {', '.join(valid)})"
