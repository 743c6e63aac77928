"""The wire contract: schemas are valid, examples say what they claim, and our own messages and
frames obey it."""

from __future__ import annotations

import json
import re
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
    EvalReport,
    FrameError,
    Hello,
    Message,
    MessageError,
    OptOut,
    Reject,
    RetryWindow,
    Task,
    Update,
    Welcome,
    decode_frame,
    encode_message,
    parse_message,
)
from dandelion.protocol.messages import MAX_INT32, MAX_SAFE_INTEGER, RANGES
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
    Task(
        "t1",
        4,
        N,
        3,
        {"kind": "logreg", "num_features": 4, "num_classes": 2, "hidden": 0, "param_count": 5},
        "revisit_7d",
        {"learning_rate": 0.1, "epochs": 1, "batch_size": 8, "clip_norm": 1.0},
        30.0,
        kind="evaluate",
        evaluation={"holdout": 0.2, "max_examples": 100, "max_loss": 10.0},
    ),
    ComeBack(RetryWindow(0.5, 9.5), "round_full"),
    Update("t1", 3, N, 12, True, {"loss": 0.5, "accuracy": 0.75}, norm=1.5),
    EvalReport("t1", 4, N, {"count": 60, "loss_sum": 24.6, "correct": 50}),
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
    st.integers(-(10**400), 10**400),  # beyond any float: must not reach float()
    st.sampled_from([1e9, 1e9 + 1, -1e9, 1e308, MAX_INT32 + 1, MAX_SAFE_INTEGER + 1, 10**400]),
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


# -- numbers: every one has a range, the same in the schemas and in the decoder ----------------


def _numeric_subschemas(node: object, where: str = "") -> list[tuple[str, dict[str, object]]]:
    """Every subschema of type integer or number, with a path naming it."""
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            found.append((where, node))
        for key, value in node.items():
            found += _numeric_subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _numeric_subschemas(value, f"{where}/{i}")
    return found


def test_every_number_in_the_contract_has_a_range() -> None:
    seen = 0
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        for where, sub in _numeric_subschemas(json.loads(path.read_text())):
            seen += 1
            assert "minimum" in sub or "exclusiveMinimum" in sub, (path.name, where)
            assert "maximum" in sub, (path.name, where)
    assert seen >= 30  # the walk reached the nested objects too


def _at(schema: dict[str, object], key: str) -> dict[str, object] | None:
    """The subschema of a RANGES key ("round", "retry_window.min_s", "versions[]",
    "metrics{}") in a message schema, or None when the message has no such field."""
    node: object = schema["properties"]
    name, _, inner = key.partition(".")
    suffix = ""
    if name.endswith(("[]", "{}")):
        name, suffix = name[:-2], name[-2:]
    node = node.get(name) if isinstance(node, dict) else None
    # Two messages may use one field name differently (an update's metrics are named numbers,
    # an eval_report's three fixed sums): a key that does not fit a schema is not in it.
    if isinstance(node, dict) and inner:
        node = node.get("properties", {}).get(inner)
    if isinstance(node, dict) and suffix:
        node = node.get("items" if suffix == "[]" else "additionalProperties")
    return node if isinstance(node, dict) else None


def test_the_decoder_and_the_schemas_share_every_range() -> None:
    for key, limit in RANGES.items():
        found = 0
        for path in sorted(SCHEMAS.glob("*.schema.json")):
            sub = _at(json.loads(path.read_text()), key)
            if sub is None or "const" in sub:
                continue
            found += 1
            low = sub.get("exclusiveMinimum") if limit.lo_open else sub.get("minimum")
            assert (low, sub.get("maximum")) == (limit.lo, limit.hi), (path.name, key, sub)
        assert found >= 1, key


def test_the_readme_documents_every_range() -> None:
    text = (SCHEMAS / "README.md").read_text()
    section = text[text.index("## Numbers") : text.index("## Strictness")]
    for key in RANGES:
        field = key.removesuffix("[]").removesuffix("{}")
        assert re.search(rf"`([a-z_]+\.)?{re.escape(field)}`", section), key
    for bound in ("2^53", "2^31", "10^9", "86,400", "31,536,000", "255"):
        assert bound in section, bound


BOUNDARY = json.loads((EXAMPLES / "valid" / "update.boundary.json").read_text())


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("update.metric_too_large.json", "metrics.loss"),
        ("update.metric_too_small.json", "metrics.loss"),
        ("update.huge_integer_metric.json", "metrics.loss"),
        ("update.too_many_examples.json", "num_examples"),
        ("update.norm_too_large.json", "norm"),
        ("update.round_too_large.json", "round"),
        ("hello.version_too_high.json", "versions"),
        ("welcome.heartbeat_too_long.json", "heartbeat_s"),
        ("task.deadline_too_far.json", "deadline_s"),
        ("task.holdout_too_large.json", "evaluation.holdout"),
        ("eval_report.zero_count.json", "metrics.count"),
        ("eval_report.negative_loss.json", "metrics.loss_sum"),
        ("eval_report.loss_too_large.json", "metrics.loss_sum"),
    ],
)
def test_a_number_out_of_range_is_refused_by_both_naming_the_field(name: str, field: str) -> None:
    text = (EXAMPLES / "invalid" / name).read_text()
    reason = SchemaValidator(SCHEMAS)(json.loads(text))
    assert reason is not None and field in reason, reason
    with pytest.raises(MessageError, match=field.replace(".", r"\.")):
        parse_message(text)


def test_numbers_at_their_bounds_are_taken_by_both() -> None:
    assert SchemaValidator(SCHEMAS)(BOUNDARY) is None
    update = parse_message(json.dumps(BOUNDARY))
    assert isinstance(update, Update)
    assert update.round == MAX_SAFE_INTEGER and update.num_examples == MAX_INT32
    assert max(update.metrics.values()) == 1e9 and min(update.metrics.values()) == -1e9
    # Just beyond each bound: refused by both, never an OverflowError.
    for key, value in (
        ("round", MAX_SAFE_INTEGER + 1),
        ("num_examples", MAX_INT32 + 1),
        ("norm", 10**400),
        ("metrics", {"loss": 1_000_000_001}),
        ("metrics", {"loss": -(10**400)}),
    ):
        message = {**BOUNDARY, key: value}
        assert SchemaValidator(SCHEMAS)(message) is not None, key
        with pytest.raises(MessageError):
            parse_message(json.dumps(message))
