"""schemas/secagg/: one JSON Schema per secure-aggregation message, valid and invalid examples,
and the parser and the schemas agreeing on both, and on every message a real round sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from dandelion.protocol import MessageError
from dandelion.protocol.secagg.messages import SECAGG_TYPES, encode_secagg, parse_secagg
from dandelion.protocol.secagg.server import Phase

from .secagg_harness import Round

FOLDER = Path(__file__).resolve().parent.parent / "schemas" / "secagg"
EXAMPLES = FOLDER / "examples"
VALIDATORS = {
    t: Draft202012Validator(json.loads((FOLDER / f"{t}.schema.json").read_text()))
    for t in SECAGG_TYPES
}


def _examples(kind: str) -> list[Path]:
    return sorted((EXAMPLES / kind).glob("*.json"))


def _errors(raw: Any) -> list[str]:
    mtype = raw.get("type") if isinstance(raw, dict) else None
    validator = VALIDATORS.get(mtype) if isinstance(mtype, str) else None
    if validator is None:
        return ["no schema"]
    return [e.message for e in validator.iter_errors(raw)]


def test_one_valid_schema_per_message_type_and_examples_of_each() -> None:
    files = {p.name.removesuffix(".schema.json") for p in FOLDER.glob("*.schema.json")}
    assert files == set(SECAGG_TYPES)
    for t in SECAGG_TYPES:
        schema = json.loads((FOLDER / f"{t}.schema.json").read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
    valid = [p.name.split(".")[0] for p in _examples("valid")]
    invalid = [p.name.split(".")[0] for p in _examples("invalid")]
    for t in SECAGG_TYPES:
        assert t in valid, t
        assert invalid.count(t) >= 2, t


@pytest.mark.parametrize("path", _examples("valid"), ids=lambda p: p.name)
def test_valid_examples_pass_both(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert _errors(raw) == []
    assert json.loads(encode_secagg(parse_secagg(raw))) == raw


@pytest.mark.parametrize("path", _examples("invalid"), ids=lambda p: p.name)
def test_invalid_examples_fail_both(path: Path) -> None:
    raw = json.loads(path.read_text())
    assert _errors(raw) != []
    if ".extra_field." in path.name:  # the parser ignores unknown fields; the schema does not
        parse_secagg(raw)
    else:
        with pytest.raises(MessageError):
            parse_secagg(raw)


async def test_every_message_of_a_round_with_dropouts_obeys_its_schema() -> None:
    r = Round(12, d=8)
    sent: list[Any] = []
    receive = r.server.receive

    async def spy(i: int, msg: Any, now: float, frame: bytes | None = None) -> None:
        sent.append(msg)
        await receive(i, msg, now, frame)

    r.server.receive = spy  # type: ignore[method-assign]
    await r.run({Phase.MASKED: {3}, Phase.UNMASK: {4}})
    assert r.server.phase is Phase.DONE
    messages = [m for _, m in r.received] + sent
    assert {m.TYPE for m in messages} == set(SECAGG_TYPES) - {"secagg_abort"}
    for m in messages:
        assert _errors(json.loads(encode_secagg(m))) == [], m.TYPE


def test_every_number_in_the_secagg_schemas_has_a_range() -> None:
    def walk(node: Any, where: str) -> list[str]:
        bad: list[str] = []
        if isinstance(node, dict):
            if node.get("type") in ("integer", "number"):
                has_low = "minimum" in node or "exclusiveMinimum" in node
                if not (has_low and "maximum" in node):
                    bad.append(where)
            for key, value in node.items():
                bad += walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                bad += walk(value, f"{where}/{i}")
        return bad

    for t in SECAGG_TYPES:
        assert walk(json.loads((FOLDER / f"{t}.schema.json").read_text()), t) == []
