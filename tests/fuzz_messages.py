"""Adversarial worker messages for the fuzz test: hypothesis draws the recipes, a seeded
generator expands each recipe into many concrete messages (cheaply: hypothesis decides what
kind of damage, the expansion decides the bytes)."""

from __future__ import annotations

import json
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

BASE: dict[str, dict[str, Any]] = {
    "hello": {
        "type": "hello",
        "v": 1,
        "worker_id": "fuzz-worker-0001",
        "versions": [1],
        "runtime": {"kind": "cpython", "version": "3.12"},
        "consent": "opted_in",
    },
    "checkin": {"type": "checkin", "v": 1, "eligibility": {"charging": True}, "tasks": ["t1"]},
    "update": {
        "type": "update",
        "v": 1,
        "task": "t1",
        "round": 1,
        "nonce": "AAAAAAAAAAAAAAAAAAAA",
        "num_examples": 10,
        "metrics": {"loss": 0.5},
        "unclipped": True,
    },
    "eval_report": {
        "type": "eval_report",
        "v": 1,
        "task": "t1",
        "round": 1,
        "nonce": "AAAAAAAAAAAAAAAAAAAA",
        "metrics": {"count": 10, "loss_sum": 4.5, "correct": 7},
    },
    "opt_out": {"type": "opt_out", "v": 1, "reason": "fuzz"},
}
EVIL_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    10**400,
    -(10**30),
    2**63,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x" * 70_000,
    "\u0000\ud7ff\uffff",
    "💥" * 50,
    [],
    [1, [2, [3]]],
    {},
    {"a": {"b": {"c": {}}}},
    "update",
    "hello",
    1e308,
    -0.0,
]
DAMAGE = (
    "wrong_type",
    "drop_field",
    "extra_field",
    "huge_number",
    "nan",
    "deep_nesting",
    "raw_text",
    "raw_bytes",
    "truncated_json",
    "frame_lying_length",
    "frame_truncated",
    "frame_bad_header",
    "frame_nan_payload",
    "frame_wrong_shape",
    "frame_huge_shape",
    "frame_unasked",
    "wrong_order",
    "valid",
)


@dataclass(frozen=True)
class Recipe:
    damage: str
    kind: str
    field: str
    value_index: int
    seed: int
    count: int


recipes = st.builds(
    Recipe,
    damage=st.sampled_from(DAMAGE),
    kind=st.sampled_from(sorted(BASE)),
    field=st.sampled_from(
        [
            "type",
            "v",
            "worker_id",
            "versions",
            "runtime",
            "consent",
            "task",
            "round",
            "nonce",
            "num_examples",
            "metrics",
            "unclipped",
            "eligibility",
            "tasks",
            "reason",
            "norm",
        ]
    ),
    value_index=st.integers(0, len(EVIL_VALUES) - 1),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(20, 60),
)
batches = st.lists(recipes, min_size=8, max_size=12)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def _frame(header: dict[str, Any], payload: bytes, *, lie: int = 0) -> bytes:
    raw = json.dumps(header, allow_nan=True).encode()
    raw += b" " * (-(4 + len(raw)) % 8)
    return struct.pack("<I", max(0, min(2**32 - 1, len(raw) + lie))) + raw + payload


def _frame_header(rng: random.Random) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "update",
        "task": "t1",
        "round": rng.randint(0, 3),
        "nonce": "AAAAAAAAAAAAAAAAAAAA",
        "dtype": "float32",
        "shape": [11],
    }


def expand(recipe: Recipe) -> list[str | bytes]:
    """``recipe.count`` messages of the recipe's kind of damage."""
    rng = random.Random(recipe.seed)
    out: list[str | bytes] = []
    for _ in range(recipe.count):
        base = dict(BASE[recipe.kind])
        value = EVIL_VALUES[(recipe.value_index + rng.randrange(3)) % len(EVIL_VALUES)]
        d = recipe.damage
        if d == "wrong_type":
            base[recipe.field] = value
            out.append(_dumps(base))
        elif d == "drop_field":
            base.pop(rng.choice(sorted(base)), None)
            out.append(_dumps(base))
        elif d == "extra_field":
            base[f"x{rng.randrange(1000)}"] = value
            out.append(_dumps(base))
        elif d == "huge_number":
            base[recipe.field] = rng.choice([10**400, 2**64, -(2**63) - 1, 1e308 * 10])
            out.append(_dumps(base))
        elif d == "nan":
            base[recipe.field] = rng.choice([math.nan, math.inf, -math.inf])
            out.append(_dumps(base))
        elif d == "deep_nesting":
            depth = rng.choice([50, 500, 5000])
            out.append(
                '{"type": "checkin", "v": 1, "eligibility": ' + "[" * depth + "]" * depth + "}"
            )
        elif d == "raw_text":
            out.append("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 200))))
        elif d == "raw_bytes":
            out.append(rng.randbytes(rng.randrange(0, 300)))
        elif d == "truncated_json":
            text = _dumps(base)
            out.append(text[: rng.randrange(1, len(text))])
        elif d == "frame_lying_length":
            out.append(
                _frame(_frame_header(rng), b"\0" * 44, lie=rng.choice([-8, 8, 10**6, -(10**3)]))
            )
        elif d == "frame_truncated":
            full = _frame(_frame_header(rng), b"\0" * 44)
            out.append(full[: rng.randrange(0, len(full))])
        elif d == "frame_bad_header":
            raw = rng.choice([b"not json", b"[1,2]", b'{"v":1}', b"\xff\xfe"])
            out.append(struct.pack("<I", len(raw)) + raw + b"\0" * 44)
        elif d == "frame_nan_payload":
            if rng.random() < 0.5:
                out.append(_dumps(BASE["update"]))
            out.append(_frame(_frame_header(rng), struct.pack("<11f", *([math.nan] * 11))))
        elif d == "frame_wrong_shape":
            header = _frame_header(rng) | {"shape": [rng.choice([0, 1, 12, 10**9])]}
            out.append(_frame(header, b"\0" * 44))
        elif d == "frame_huge_shape":
            header = _frame_header(rng) | {
                "shape": [2**31, 2**31],
                "dtype": rng.choice(["float64", "int8", "x"]),
            }
            out.append(_frame(header, b""))
        elif d == "frame_unasked":
            out.append(_frame(_frame_header(rng), b"\0" * 44))
        elif d == "wrong_order":
            kind = rng.choice(["update", "eval_report", "checkin", "hello", "opt_out"])
            out.append(
                _dumps(
                    BASE[kind] | {"worker_id": f"fuzz-{rng.randrange(10**6):06d}x"}
                    if kind == "hello"
                    else BASE[kind]
                )
            )
        else:
            out.append(_dumps(base))
    return out


# -- Deep fuzzing (tests/test_fuzz_deep.py): damage done to a live assignment ---------------------
#
# The builders below start from what a session really holds — a task message from the
# coordinator, its nonce, its dtype — and break one thing. Next to each kind of damage is what
# the contract (schemas/README.md) answers: an ``error`` with its code and ``ref_type``, or, for
# an update whose frame matches it, the reject reason the round gives.

F32_BITS = {"nan": 0x7FC00000, "inf": 0x7F800000, "minus_inf": 0xFF800000}
F16_BITS = {"nan": 0x7E00, "inf": 0x7C00, "minus_inf": 0xFC00}
#: Finite update values: each reaches the clip and the sum.
FINITE_VALUES = (
    "zeros",
    "small",
    "huge",  # far beyond clip_norm: the server scales it down
    "dtype_max",  # every value the largest finite one: the squares overflow float32
    "one_max",
    "subnormal",
    "negative_zero",
    "alternating",
)
#: Values the kernel refuses (non_finite) once it has measured them.
NON_FINITE_VALUES = ("nan", "inf", "minus_inf", "all_nan")
_DTYPES = {"float32": ("<f4", "<u4", F32_BITS), "float16": ("<f2", "<u2", F16_BITS)}


class Raw(str):
    """JSON text written into a message as it is: numbers Python's json cannot write, such as
    ``1e400`` (parsed as infinity), an integer of 400 digits, or an escaped string."""


DROP = object()  # a field value that removes the field


def to_text(obj: Any) -> str:
    """``obj`` as JSON text, with every :class:`Raw` value spliced in verbatim."""
    raws: list[str] = []

    def mark(o: Any) -> Any:
        if isinstance(o, Raw):
            raws.append(str(o))
            return f"\x00{len(raws) - 1}\x00"
        if isinstance(o, dict):
            return {k: mark(v) for k, v in o.items() if v is not DROP}
        if isinstance(o, list):
            return [mark(v) for v in o]
        return o

    text = json.dumps(mark(obj), allow_nan=True)
    for i, r in enumerate(raws):
        text = text.replace(json.dumps(f"\x00{i}\x00"), r, 1)
    return text


def update_for(assignment: dict[str, Any], /, **changes: Any) -> dict[str, Any]:
    """A well-formed update for ``assignment`` (a task message as received), with ``changes``."""
    msg: dict[str, Any] = {
        "type": "update",
        "v": 1,
        "task": assignment["task"],
        "round": assignment["round"],
        "nonce": assignment["nonce"],
        "num_examples": 10,
        "metrics": {"loss": 0.5, "accuracy": 0.75},
        "unclipped": True,
    }
    msg.update(changes)
    return msg


def header_for(update: dict[str, Any], dtype: str, count: int) -> dict[str, Any]:
    """The frame header that matches ``update``."""
    return {
        "v": 1,
        "type": "update",
        "task": update["task"],
        "round": update["round"],
        "nonce": update["nonce"],
        "dtype": dtype,
        "shape": [count],
    }


def frame_bytes(
    header: dict[str, Any] | bytes, payload: bytes, *, lie: int = 0, align: int = 8
) -> bytes:
    """A tensor frame; ``lie`` is added to the header length the prefix announces."""
    raw = header if isinstance(header, bytes) else to_text(header).encode()
    raw += b" " * (-(4 + len(raw)) % align)
    return struct.pack("<I", max(0, min(2**32 - 1, len(raw) + lie))) + raw + payload


def values(kind: str, dtype: str, count: int, rng: random.Random) -> bytes:
    """``count`` little-endian ``dtype`` values of one of FINITE_VALUES or NON_FINITE_VALUES."""
    import numpy as np

    wire, bits_type, bits = _DTYPES[dtype]
    biggest = float(np.finfo(wire).max)
    if kind == "zeros" or kind in NON_FINITE_VALUES:
        out = np.zeros(count)
    elif kind == "small":
        out = np.array([rng.gauss(0.0, 0.05) for _ in range(count)])
    elif kind == "huge":
        out = np.full(count, 6e4 if dtype == "float16" else 1e6)
    elif kind == "dtype_max":
        out = np.full(count, biggest)
    elif kind == "one_max":
        out = np.zeros(count)
        out[rng.randrange(count)] = -biggest
    elif kind == "subnormal":
        out = np.full(count, float(np.finfo(wire).smallest_subnormal))
    elif kind == "negative_zero":
        out = np.full(count, -0.0)
    elif kind == "alternating":
        out = np.array([(-1.0) ** i * rng.uniform(0, 100) for i in range(count)])
    else:
        raise ValueError(kind)
    encoded = out.astype(wire)
    if kind in NON_FINITE_VALUES:
        raw = encoded.view(bits_type)
        if kind == "all_nan":
            raw[:] = bits["nan"]
        else:
            raw[rng.randrange(count)] = bits[kind]
    return encoded.tobytes()


#: Schema-valid updates at the edges of their fields (schemas/README.md, "Numbers": the bounds
#: are inclusive): each must still be taken by the round.
EXTREME_UPDATES: tuple[dict[str, Any], ...] = (
    {"num_examples": 1},
    {"num_examples": 2_147_483_647},
    {"metrics": {}},
    {"metrics": {f"m{i}": float(i) for i in range(16)}},
    {"metrics": {"loss": 1e9, "accuracy": -1e9}},
    {"metrics": {"loss": 1_000_000_000, "accuracy": -1_000_000_000}},
    {"metrics": {"loss": -0.0, "accuracy": 5e-324}},
    {"metrics": {"loss": 0.5}},  # accuracy absent
    {"norm": 0},
    {"norm": 1e9},
    {"norm": 5e-324},
    {"unclipped": False, "norm": 2.5},
    {"num_examples": 2_147_483_647, "metrics": {"loss": 1e9, "accuracy": 1e9}},
)

#: Updates that break their schema or the session's rules, with the error they get:
#: (changes, error code, ref_type).
BROKEN_UPDATES: tuple[tuple[dict[str, Any], str, str | None], ...] = (
    ({"num_examples": 0}, "malformed", "update"),
    ({"num_examples": -1}, "malformed", "update"),
    ({"num_examples": 2**31}, "malformed", "update"),
    ({"num_examples": 1.5}, "malformed", "update"),
    ({"num_examples": 10.0}, "malformed", "update"),  # a JSON integer? not to parse_message
    ({"num_examples": "10"}, "malformed", "update"),
    ({"num_examples": True}, "malformed", "update"),
    ({"num_examples": None}, "malformed", "update"),
    ({"num_examples": Raw("1" + "0" * 400)}, "malformed", "update"),
    ({"metrics": {f"m{i}": 1.0 for i in range(17)}}, "malformed", "update"),
    ({"metrics": {"Loss": 0.5}}, "malformed", "update"),
    ({"metrics": {"loss": "0.5"}}, "malformed", "update"),
    ({"metrics": {"loss": True}}, "malformed", "update"),
    ({"metrics": {"loss": None}}, "malformed", "update"),
    ({"metrics": {"loss": {"value": 1}}}, "malformed", "update"),
    ({"metrics": []}, "malformed", "update"),
    ({"metrics": {"loss": Raw("NaN")}}, "malformed", None),  # not JSON: no type is known
    ({"norm": Raw("Infinity")}, "malformed", None),
    ({"metrics": {"loss": 1e308, "accuracy": 0.5}}, "malformed", "update"),
    ({"metrics": {"loss": 1_000_000_000.5}}, "malformed", "update"),
    ({"metrics": {"accuracy": -1_000_000_001}}, "malformed", "update"),
    ({"metrics": {"loss": Raw("1e400")}}, "malformed", "update"),  # parsed as infinity
    ({"metrics": {"loss": Raw("-1e400")}}, "malformed", "update"),
    ({"metrics": {"loss": Raw("1" + "0" * 400), "accuracy": 1}}, "malformed", "update"),
    ({"norm": -1.0}, "malformed", "update"),
    ({"norm": "1"}, "malformed", "update"),
    ({"norm": 1_000_000_001}, "malformed", "update"),
    ({"norm": 1e308}, "malformed", "update"),
    ({"norm": Raw("1e400")}, "malformed", "update"),
    ({"norm": Raw("1" + "0" * 400)}, "malformed", "update"),
    ({"round": 0}, "malformed", "update"),
    ({"round": -3}, "malformed", "update"),
    ({"round": 2**53}, "malformed", "update"),
    ({"round": 1.0}, "malformed", "update"),
    ({"round": "1"}, "malformed", "update"),
    ({"nonce": "short"}, "malformed", "update"),
    ({"nonce": "x" * 65}, "malformed", "update"),
    ({"nonce": "not a nonce, has spaces"}, "malformed", "update"),
    ({"task": "Upper-Case"}, "malformed", "update"),
    ({"task": ""}, "malformed", "update"),
    ({"unclipped": "yes"}, "malformed", "update"),
    ({"unclipped": None}, "malformed", "update"),
    ({"extra": 1}, "malformed", "update"),
    ({"metrics": DROP}, "malformed", "update"),
    ({"nonce": DROP}, "malformed", "update"),
    ({"unclipped": DROP}, "malformed", "update"),
    ({"v": 0}, "malformed", "update"),
    ({"v": 256}, "malformed", "update"),
    ({"v": "1"}, "malformed", "update"),
    ({"v": 1.0}, "malformed", "update"),
    ({"v": 2}, "unsupported_version", "update"),  # valid, but not the connection's version
    ({"type": "Update"}, "malformed", "Update"),
    ({"type": DROP}, "malformed", None),
)

#: A broken frame after a well-formed update: (name, builder). Every one is answered with
#: ``error`` ``bad_frame`` (without ``ref_type``) and drops the update.
FrameBreaker = Any


def _h(update: dict[str, Any], dtype: str, count: int, /, **changes: Any) -> dict[str, Any]:
    return header_for(update, dtype, count) | changes


BROKEN_FRAMES: tuple[tuple[str, FrameBreaker], ...] = (
    ("type_model", lambda u, d, n, p: frame_bytes(_h(u, d, n, type="model"), p)),
    ("other_task", lambda u, d, n, p: frame_bytes(_h(u, d, n, task="zz-other"), p)),
    ("next_round", lambda u, d, n, p: frame_bytes(_h(u, d, n, round=u["round"] + 1), p)),
    ("other_nonce", lambda u, d, n, p: frame_bytes(_h(u, d, n, nonce="B" * 24), p)),
    ("extra_field", lambda u, d, n, p: frame_bytes(_h(u, d, n, extra=1), p)),
    ("no_dtype", lambda u, d, n, p: frame_bytes(_h(u, d, n, dtype=DROP), p)),
    ("float64", lambda u, d, n, p: frame_bytes(_h(u, d, n, dtype="float64"), p + p)),
    ("shape_empty", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[]), p)),
    ("shape_zero", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[0]), b"")),
    ("shape_negative", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[-n]), p)),
    ("shape_5d", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[1, 1, 1, 1, n]), p)),
    ("shape_text", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[str(n)]), p)),
    ("shape_int", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=n), p)),
    ("shape_huge", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[2**31 - 1] * 2), p)),
    ("shape_lies", lambda u, d, n, p: frame_bytes(_h(u, d, n, shape=[n + 1]), p)),
    ("v2", lambda u, d, n, p: frame_bytes(_h(u, d, n, v=2), p)),
    ("round_nan", lambda u, d, n, p: frame_bytes(_h(u, d, n, round=Raw("NaN")), p)),
    ("round_negative", lambda u, d, n, p: frame_bytes(_h(u, d, n, round=-1), p)),
    ("dtype_lies", lambda u, d, n, p: frame_bytes(_h(u, d, n, dtype=_other(d)), p)),
    ("truncated", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p[: len(p) // 2])),
    ("one_byte_short", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p[:-1])),
    ("trailer", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p + b"\0\0\0\0")),
    ("prefix_long", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p, lie=8)),
    ("prefix_short", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p, lie=-3)),
    ("prefix_huge", lambda u, d, n, p: frame_bytes(header_for(u, d, n), p, lie=2**32)),
    ("prefix_4097", lambda u, d, n, p: struct.pack("<I", 4097) + b" " * 4097 + p),
    ("header_not_json", lambda u, d, n, p: frame_bytes(b"\xff\xfe{not json", p)),
    ("header_array", lambda u, d, n, p: frame_bytes(b"[1, 2, 3]", p)),
    ("only_prefix", lambda u, d, n, p: struct.pack("<I", 0)),
    ("three_bytes", lambda u, d, n, p: b"\x01\x02\x03"),
    ("empty", lambda u, d, n, p: b""),
)


def _other(dtype: str) -> str:
    return "float16" if dtype == "float32" else "float32"


def valid_frame(
    update: dict[str, Any], dtype: str, payload: bytes, count: int, rng: random.Random
) -> bytes:
    """A frame that matches ``update``, written in one of the ways the frame rules allow: any
    JSON whitespace and key order, values on no particular boundary, escaped strings, a key
    given twice (the last one counts)."""
    header = header_for(update, dtype, count)
    style = rng.randrange(5)
    if style == 1:  # shuffled keys, unaligned values
        keys = list(header)
        rng.shuffle(keys)
        return frame_bytes({k: header[k] for k in keys}, payload, align=1)
    if style == 2:  # whitespace all around
        text = "\n " + json.dumps(header, indent=2) + "\t\r\n"
        return frame_bytes(text.encode(), payload, align=rng.choice([1, 4, 8]))
    if style == 3:  # escaped task name
        escaped = "".join(f"\\u{ord(c):04x}" for c in header["task"])
        return frame_bytes(header | {"task": Raw(f'"{escaped}"')}, payload)
    if style == 4:  # the nonce twice: json keeps the last one, the right one
        text = '{"nonce": "Zz' + "9" * 22 + '", ' + to_text(header)[1:]
        return frame_bytes(text.encode(), payload)
    return frame_bytes(header, payload)
