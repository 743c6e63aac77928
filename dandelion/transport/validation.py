"""Inbound message validation against the wire contract in ``schemas/``.

One compiled validator per message type, built once. A failing message is described by the
first error jsonschema finds, phrased for the worker's author (field path and reason).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

__all__ = ["SchemaValidator", "schema_dir"]


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
        validator = self._validators.get(mtype) if isinstance(mtype, str) else None
        if validator is None:
            return f"unknown message type {mtype!r}"
        error = next(iter(validator.iter_errors(message)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(message)"
        return f"{mtype}: {where}: {error.message}"[:500]


@cache
def _load(directory: Path) -> dict[str, Draft202012Validator]:
    validators: dict[str, Draft202012Validator] = {}
    for path in sorted(directory.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        mtype = path.name.removesuffix(".schema.json")
        if mtype in ("frame_header", "common"):
            continue
        Draft202012Validator.check_schema(schema)
        validators[mtype] = Draft202012Validator(schema)
    if not validators:
        raise FileNotFoundError(f"no message schemas in {directory}")
    return validators
