"""The wire's JSON fast paths give exactly what ``json`` gives: the same values, the same text,
and an error wherever ``json`` raises one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dandelion.protocol import jsontext

TEXTS = [
    '{"type":"checkin","v":1,"eligibility":{"idle":true}}',
    '{"a":[1,2.5,-0.0,1e300,true,false,null],"b":{"c":"\\u00e9\\n"}}',
    "[1]",
    '"just a string"',
    ' {"a":1} ',  # whitespace around the value: json.loads takes it
    '{"a":1}\n',
]
BAD = ["", "{", '{"a":1} x', '{"a":NaN} junk', "\ufeff{}", "[1,]", '{"a":1}{"b":2}', "nul"]


@pytest.mark.parametrize("text", TEXTS)
def test_loads_agrees_with_json_on_text_and_bytes(text: str) -> None:
    expected = json.loads(text)
    assert jsontext.loads(text) == expected
    assert jsontext.loads(text.encode()) == expected


def test_loads_of_utf16_bytes_is_what_json_makes_of_them() -> None:
    raw = '{"a":[1,2]}'.encode("utf-16-le")
    assert jsontext.loads(raw) == json.loads(raw) == {"a": [1, 2]}


def _outcome(load: Any, data: str | bytes) -> tuple[str, Any]:
    try:
        return "value", load(data)
    except ValueError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("text", BAD)
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError) as ours:
        jsontext.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)
    # As bytes, the same as json.loads of them (which takes a UTF-8 byte-order mark).
    assert _outcome(jsontext.loads, text.encode()) == _outcome(json.loads, text.encode())


def test_invalid_utf8_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        jsontext.loads(b'{"a":"\xff"}')


@pytest.mark.parametrize(
    "value",
    [
        {"type": "ack", "v": 1, "retry_window": {"min_s": 5.0, "max_s": 10.0}},
        {"x": [1, 2.5, -0.0, 1e300, True, None], "é": {"b": "x\u2028\n\"'"}},
        [],
        {"deep": [[[{"a": 0.1}]]]},
    ],
)
def test_dumps_is_the_compact_encoder(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), allow_nan=False)
    assert jsontext.dumps(value) == expected


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_dumps_refuses_nan_and_infinities(number: float) -> None:
    with pytest.raises(ValueError):
        jsontext.dumps({"loss": number})
