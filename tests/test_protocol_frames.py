"""Tensor frames: layout, alignment, and refusal of frames that lie."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dandelion.protocol import FrameError, FrameHeader, decode_frame, encode_frame
from dandelion.protocol.frames import floats_from_payload, payload_from_floats


def _header(n: int, dtype: str = "float32", ftype: str = "update") -> FrameHeader:
    return FrameHeader(ftype, "task-a", 3, "n" * 16, dtype, (n,))  # type: ignore[arg-type]


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=300))
def test_float32_round_trip_is_exact_and_aligned(values: list[float]) -> None:
    frame = encode_frame(_header(len(values)), payload_from_floats(values))
    (hlen,) = struct.unpack_from("<I", frame, 0)
    assert (4 + hlen) % 8 == 0, "values must start on an 8-byte boundary"
    decoded = decode_frame(frame)
    assert decoded.header == _header(len(values))
    assert floats_from_payload(decoded.payload) == values


def test_payload_is_a_view_not_a_copy() -> None:
    frame = bytearray(encode_frame(_header(4), payload_from_floats([1.0, 2.0, 3.0, 4.0])))
    decoded = decode_frame(frame)
    frame[-4:] = struct.pack("<f", 9.0)
    assert floats_from_payload(decoded.payload)[-1] == 9.0


def test_float16_round_trip() -> None:
    values = [0.5, -2.0, 1024.0]
    frame = encode_frame(_header(3, "float16"), payload_from_floats(values, "float16"))
    decoded = decode_frame(frame)
    assert decoded.header.payload_bytes == 6
    assert floats_from_payload(decoded.payload, "float16") == values


def test_values_are_little_endian() -> None:
    frame = encode_frame(_header(1), payload_from_floats([1.0]))
    assert frame[-4:] == struct.pack("<f", 1.0)


def _raw(header: object, payload: bytes = b"", *, hlen: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<I", len(text) if hlen is None else hlen) + text + payload


GOOD = {"v": 1, "type": "update", "task": "t", "round": 1, "nonce": "x", "dtype": "float32"}


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (b"\x01\x00", "shorter than its length prefix"),
        (_raw({**GOOD, "shape": [2]}, b"\0" * 8, hlen=5000), "exceeds"),
        (_raw({**GOOD, "shape": [2]}, b"", hlen=900), "cannot hold"),
        (struct.pack("<I", 3) + b"{x]", "not JSON"),
        (_raw([1, 2]), "JSON object"),
        (_raw({**GOOD, "shape": [2]}, b"\0" * 7), "announces 8"),
        (_raw({**GOOD, "shape": [2]}, b"\0" * 12), "announces 8"),
        (_raw({**GOOD, "shape": [0]}), "positive integers"),
        (_raw({**GOOD, "shape": [1.5]}), "positive integers"),
        (_raw({**GOOD, "shape": [2], "dtype": "float64"}, b"\0" * 16), "dtype"),
        (_raw({**GOOD, "shape": [2], "type": "gradient"}, b"\0" * 8), "frame type"),
        (_raw({**GOOD, "shape": [2], "v": 2}, b"\0" * 8), "v must be 1"),
        (_raw({**GOOD, "shape": [2], "round": -1}, b"\0" * 8), "round"),
        (_raw({**GOOD, "shape": [2], "extra": 1}, b"\0" * 8), "unknown fields"),
        (_raw({**GOOD, "shape": [2], "round": True}, b"\0" * 8), "round"),
    ],
)
def test_lying_or_broken_frames_are_refused(frame: bytes, fragment: str) -> None:
    with pytest.raises(FrameError, match=fragment):
        decode_frame(frame)


def test_encode_refuses_a_payload_of_the_wrong_length() -> None:
    with pytest.raises(FrameError):
        encode_frame(_header(3), b"\0" * 8)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data)


def test_a_masked_frame_carries_uint32_and_only_it_does() -> None:
    values = bytes(range(16))
    frame = decode_frame(encode_frame(_header(4, "uint32", "masked"), values))
    assert (frame.header.type, frame.header.dtype, bytes(frame.payload)) == (
        "masked",
        "uint32",
        values,
    )
    for dtype, ftype in (("uint32", "update"), ("uint32", "model"), ("float32", "masked")):
        with pytest.raises(FrameError, match="uint32 goes with type masked"):
            decode_frame(encode_frame(_header(4, dtype, ftype), values))
