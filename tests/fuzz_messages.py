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
            kind = rng.choice(["update", "checkin", "hello", "opt_out"])
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
