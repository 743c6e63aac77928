"""Inbound message validation against the wire contract in ``schemas/``.

Each schema is compiled once into Python code by fastjsonschema (about 5 µs per message, where a
generic validator takes over 100 µs). The schemas use only keywords whose meaning is the same in
JSON Schema draft 7, which fastjsonschema implements, and in 2020-12, which they declare;
``tests/test_schemas.py`` checks that fastjsonschema and the reference implementation
(jsonschema, 2020-12) agree on every example and on many generated messages.

Every number in the schemas has a range (schemas/README.md, section Numbers), the same as the
decoder's (``protocol.messages.RANGES``; a test keeps them equal): a number out of range — an
integer of hundreds of digits, ``1e400`` read as infinity — is refused here, with the field's
name in the reason, before anything converts or adds it. fastjsonschema compares a Python int
with the bounds exactly, so the check itself cannot overflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema

__all__ = ["SchemaValidator", "schema_dir"]

_NOT_MESSAGES = ("frame_header", "common")


def schema_dir() -> Path:
    """Where the JSON schemas are: packaged in the wheel, or the source tree's ``schemas/``."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_schemas"
    return packaged if packaged.is_dir() else here.parent / "schemas"


class SchemaValidator:
    """Callable check of one decoded message: returns None if valid, else a reason."""

    def __init__(self, directory: Path | None = None) -> None:
        self._validators = _load(directory or schema_dir())

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._validators)

    def __call__(self, message: dict[str, Any]) -> str | None:
        mtype = message.get("type")
        validate = self._validators.get(mtype) if isinstance(mtype, str) else None
        if validate is None:
            return f"unknown message type {mtype!r}"
        try:
            validate(message)
        except fastjsonschema.JsonSchemaValueException as exc:
            where = exc.message.removeprefix("data.").removeprefix("data ")
            return f"{mtype}: {where}"[:500]
        return None


@cache
def _load(directory: Path) -> dict[str, Callable[[Any], Any]]:
    validators: dict[str, Callable[[Any], Any]] = {}
    # A secure round's messages have their own folder (schemas/secagg/).
    paths = [*directory.glob("*.schema.json"), *directory.glob("secagg/*.schema.json")]
    for path in sorted(paths, key=lambda p: p.name):
        mtype = path.name.removesuffix(".schema.json")
        if mtype in _NOT_MESSAGES:
            continue
        validators[mtype] = fastjsonschema.compile(json.loads(path.read_text()))
    if not validators:
        raise FileNotFoundError(f"no message schemas in {directory}")
    return validators
