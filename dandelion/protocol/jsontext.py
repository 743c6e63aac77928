"""JSON text in and out for the wire, without ``json``'s per-call set-up.

``json.JSONEncoder.encode`` builds a new C encoder (and a closure) on every call, and
``json.loads`` runs two regular expressions around the C scanner; for messages of a few hundred
characters that set-up is a third of the cost. Here both are built once.

Rules of this file: the results are exactly ``json``'s. ``dumps`` is compact
(``separators=(",", ":")``), refuses NaN and the infinities (``ValueError``) and is only given
the acyclic dicts of ``to_dict`` (no circular-reference check). ``loads`` returns what
``json.loads`` returns; whenever its fast path does not take the whole text as one value
(leading or trailing whitespace, a byte-order mark, an error), it hands the text to
``json.loads``, which gives the value or the error. Standard library only (it runs in Pyodide);
where the C accelerator is missing or behaves differently, both fall back to ``json`` itself.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# The decoder's scanner: one value from an index, (value, end); StopIteration if none starts
# there. An attribute every JSONDecoder sets, missing from the type stubs.
_SCAN: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009


def _c_encoder() -> Callable[[Any], str] | None:
    """The C encoder built once, if this Python has one that agrees with ``JSONEncoder``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode = make(
            None,  # no circular-reference markers: to_dict never builds a cycle
            _ENCODER.default,
            json.encoder.encode_basestring_ascii,
            None,  # no indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )

        def dumps(obj: Any) -> str:
            return "".join(encode(obj, 0))

        probe = {"a": [1, 2.5, -0.0, 1e300, True, None], "é": {"b": "x\u2028\n"}}
        if dumps(probe) != _ENCODER.encode(probe):
            return None
        return dumps
    except Exception:  # an interpreter whose private encoder takes other arguments
        return None


dumps: Callable[[Any], str] = _c_encoder() or _ENCODER.encode


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``, its common case faster. Raises what ``json.loads`` raises."""
    if isinstance(text, str):
        try:
            value, end = _SCAN(text, 0)
        except (StopIteration, ValueError):
            return json.loads(text)
        if end != len(text):
            return json.loads(text)
        return value
    if b"\x00" in text:  # maybe UTF-16 or UTF-32: json.loads tells those apart
        return json.loads(text)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(text)
    try:
        value, end = _SCAN(decoded, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end != len(decoded):
        return json.loads(text)
    return value
