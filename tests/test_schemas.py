"""The wire contract: schemas are valid, examples say what they claim, and our own messages and
frames obey it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dandelion.protocol import (
    MESSAGE_TYPES,
    Ack,
    Checkin,
    ComeBack,
    Error,
    FrameError,
    Hello,
    Message,
    OptOut,
    Reject,
    RetryWindow,
    Task,
    Update,
    Welcome,
    decode_frame,
    encode_message,
)
from dandelion.transport import SchemaValidator

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
EXAMPLES = SCHEMAS / "examples"


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


def _examples(kind: str) -> list[Path]:
    return sorted((EXAMPLES / kind).glob("*.json"))


def test_every_schema_is_a_valid_2020_12_schema() -> None:
    files = sorted(SCHEMAS.glob("*.schema.json"))
    assert len(files) == len(MESSAGE_TYPES) + 1
    for path in files:
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)


def test_every_message_type_has_a_schema_and_examples() -> None:
    valid = {p.name.split(".")[0] for p in _examples("valid")}
    invalid = [p.name.split(".")[0] for p in _examples("invalid")]
    for mtype in MESSAGE_TYPES:
        assert (SCHEMAS / f"{mtype}.schema.json").exists(), mtype
        assert mtype in valid, mtype
        assert invalid.count(mtype) >= 2, mtype


@pytest.mark.parametrize("path", _examples("valid"), ids=lambda p: p.name)
def test_valid_examples_pass(path: Path) -> None:
    _schema(path.name.split(".")[0]).validate(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _examples("invalid"), ids=lambda p: p.name)
def test_invalid_examples_fail(path: Path) -> None:
    mtype = path.name.split(".")[0]
    assert not _schema(mtype).is_valid(json.loads(path.read_text())), path.name


N = "Zx8Kq2mN4pR7sT1v"
OURS: list[Message] = [
    Hello("k3J9xQ2bLmN8", {"kind": "cpython", "version": "3.12.1"}, "opted_in", client="x/1"),
    Welcome("s1", 20.0, 1 << 24, ("float32", "float16")),
    Reject("stale_round", "closed", "t1", 3, N, retry_window=RetryWindow(1.0, 2.0)),
    Reject("unsupported_version", "v1 only", versions=(1,)),
    Checkin(eligibility={"idle": True}, tasks=("t1",), capabilities={"update_dtypes": ["float32"]}),
    Checkin(),
    Task(
        "t1",
        3,
        N,
        2,
        {"kind": "logreg", "num_features": 4, "num_classes": 2, "hidden": 0, "param_count": 5},
        "revisit_7d",
        {"learning_rate": 0.1, "epochs": 1, "batch_size": 8, "clip_norm": 1.0},
        30.0,
        features={"num_buckets": 16, "horizon_days": 7.0},
    ),
    ComeBack(RetryWindow(0.5, 9.5), "round_full"),
    Update("t1", 3, N, 12, True, {"loss": 0.5, "accuracy": 0.75}, norm=1.5),
    Ack("t1", 3, N, RetryWindow(0.0, 1.0)),
    OptOut("changed my mind"),
    OptOut(),
    Error("malformed", "bad", fatal=False, ref_type="update"),
]


@pytest.mark.parametrize("msg", OURS, ids=lambda m: m.type)
def test_our_messages_obey_the_schemas(msg: Message) -> None:
    _schema(msg.type).validate(json.loads(encode_message(msg)))


def test_validator_reports_the_failing_field() -> None:
    check = SchemaValidator(SCHEMAS)
    bad = json.loads((EXAMPLES / "invalid" / "update.zero_examples.json").read_text())
    reason = check(bad)
    assert reason is not None and "num_examples" in reason
    assert check({"type": "teleport", "v": 1}) == "unknown message type 'teleport'"
    assert check(json.loads((EXAMPLES / "valid" / "update.basic.json").read_text())) is None


@pytest.mark.parametrize(
    "name", ["model.valid.bin", "update.valid.bin", "update.float16.valid.bin"]
)
def test_valid_frames_decode_and_their_headers_obey_the_schema(name: str) -> None:
    data = (EXAMPLES / "frames" / name).read_bytes()
    frame = decode_frame(data)
    _schema("frame_header").validate(frame.header.to_dict())
    assert (len(data) - len(frame.payload)) % 8 == 0
    assert frame.header.count == 5


@pytest.mark.parametrize(
    "name", ["truncated.bin", "lying_length.bin", "header_not_json.bin", "header_extra_field.bin"]
)
def test_broken_frames_are_refused(name: str) -> None:
    with pytest.raises(FrameError):
        decode_frame((EXAMPLES / "frames" / name).read_bytes())


ALL_EXAMPLES = _examples("valid") + _examples("invalid")


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: p.name)
def test_compiled_validator_agrees_with_the_reference_on_examples(path: Path) -> None:
    check = SchemaValidator(SCHEMAS)
    message = json.loads(path.read_text())
    mtype = path.name.split(".")[0]
    if message.get("type") != mtype:  # e.g. a wrong "type": checked by its own schema here
        assert not _schema(mtype).is_valid(message)
        return
    assert (check(message) is None) == _schema(mtype).is_valid(message), path.name


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_examples("valid")),
    st.data(),
)
def test_compiled_validator_agrees_with_the_reference_on_mutations(
    path: Path, data: st.DataObject
) -> None:
    message = json.loads(path.read_text())
    mtype = message["type"]
    keys = [*sorted(set(message) - {"type"}), "surprise"]
    key = data.draw(st.sampled_from(keys))
    action = data.draw(st.sampled_from(["set", "drop"]))
    if action == "drop":
        message.pop(key, None)
    else:
        message[key] = data.draw(
            st.one_of(
                _scalars,
                st.lists(_scalars, max_size=3),
                st.dictionaries(st.text(max_size=5), _scalars, max_size=3),
            )
        )
    verdict = SchemaValidator(SCHEMAS)(message) is None
    assert verdict == _schema(mtype).is_valid(message), message
