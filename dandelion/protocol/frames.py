"""Binary tensor frames: a length-prefixed JSON header followed by raw little-endian values.

Layout of one frame (one WebSocket binary message)::

    offset 0      uint32, little-endian: H, the length in bytes of the header that follows
    offset 4      H bytes of UTF-8 JSON: the header object (see schemas/frame_header.schema.json),
                  padded with trailing spaces so that the values start on an 8-byte boundary
    offset 4 + H  the values, little-endian, count = product of ``shape``, no trailer

The padding lets a receiver view the values in place (``numpy.frombuffer`` on the CPython side)
without copying and without an unaligned view. This module uses the standard library only: it
runs in Pyodide.

Raises :class:`~dandelion.protocol.errors.FrameError` for anything that does not describe itself
truthfully: a short buffer, a header that is not JSON, a length that disagrees with the shape.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from . import jsontext
from .errors import FrameError
from .versions import PROTOCOL_VERSION

__all__ = [
    "DTYPE_SIZES",
    "FRAME_TYPES",
    "MAX_HEADER_BYTES",
    "Dtype",
    "FrameHeader",
    "TensorFrame",
    "decode_frame",
    "encode_frame",
    "floats_from_payload",
    "payload_from_floats",
]

Dtype = Literal["float32", "float16", "uint32"]
FrameType = Literal["model", "update", "masked"]

#: Bytes per value of each dtype a frame may carry.
DTYPE_SIZES: dict[str, int] = {"float32": 4, "float16": 2, "uint32": 4}
FRAME_TYPES: frozenset[str] = frozenset({"model", "update", "masked"})
#: A secure-aggregation masked vector (docs/secure_aggregation.md) is values mod 2^32, and
#: only it is: model and update frames carry floats.
_MASKED_DTYPE = "uint32"
#: A header longer than this is refused before it is parsed.
MAX_HEADER_BYTES = 4096
_PREFIX = struct.Struct("<I")
_ALIGN = 8
_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What a frame says about the values it carries."""

    type: FrameType
    task: str
    round: int
    nonce: str
    dtype: Dtype
    shape: tuple[int, ...]
    v: int = PROTOCOL_VERSION

    @property
    def count(self) -> int:
        """Number of values the frame carries."""
        return math.prod(self.shape)

    @property
    def payload_bytes(self) -> int:
        return self.count * DTYPE_SIZES[self.dtype]

    def to_dict(self) -> dict[str, object]:
        return {
            "v": self.v,
            "type": self.type,
            "task": self.task,
            "round": self.round,
            "nonce": self.nonce,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }


@dataclass(frozen=True, slots=True)
class TensorFrame:
    """A decoded frame: the header and a zero-copy view of the raw values."""

    header: FrameHeader
    payload: memoryview


def encode_frame(header: FrameHeader, payload: bytes | bytearray | memoryview) -> bytes:
    """Return one frame: prefix, padded header, payload.

    Raises FrameError if ``payload`` does not hold exactly ``header.payload_bytes`` bytes.
    """
    size = memoryview(payload).nbytes
    if size != header.payload_bytes:
        raise FrameError(f"payload holds {size} bytes, header announces {header.payload_bytes}")
    text = jsontext.dumps(header.to_dict()).encode()
    pad = (-(_PREFIX.size + len(text))) % _ALIGN
    text += b" " * pad
    return b"".join((_PREFIX.pack(len(text)), text, payload))


def decode_frame(data: bytes | bytearray | memoryview) -> TensorFrame:
    """Parse one frame without copying its values.

    Raises FrameError if the frame is truncated, its header is not a valid header object, or the
    payload length disagrees with ``dtype`` and ``shape``.
    """
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise FrameError("frame shorter than its length prefix")
    (hlen,) = _PREFIX.unpack_from(view, 0)
    if hlen > MAX_HEADER_BYTES:
        raise FrameError(f"header length {hlen} exceeds {MAX_HEADER_BYTES} bytes")
    end = _PREFIX.size + hlen
    if len(view) < end:
        raise FrameError(f"frame of {len(view)} bytes cannot hold a {hlen}-byte header")
    try:
        raw = jsontext.loads(bytes(view[_PREFIX.size : end]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame header is not JSON: {exc}") from None
    header = header_from_dict(raw)
    payload = view[end:]
    if len(payload) != header.payload_bytes:
        raise FrameError(
            f"frame carries {len(payload)} bytes of values, header announces "
            f"{header.payload_bytes} ({header.dtype} x {header.count})"
        )
    return TensorFrame(header, payload)


def header_from_dict(raw: object) -> FrameHeader:
    """Build a FrameHeader from parsed JSON, checking every field. Raises FrameError."""
    if not isinstance(raw, dict):
        raise FrameError("frame header must be a JSON object")
    extra = set(raw) - {"v", "type", "task", "round", "nonce", "dtype", "shape"}
    if extra:
        raise FrameError(f"frame header has unknown fields: {sorted(extra)}")
    v, ftype, task, rnd = raw.get("v"), raw.get("type"), raw.get("task"), raw.get("round")
    nonce, dtype, shape = raw.get("nonce"), raw.get("dtype"), raw.get("shape")
    if type(v) is not int or v != PROTOCOL_VERSION:
        raise FrameError(f"frame header v must be {PROTOCOL_VERSION}")
    if ftype not in FRAME_TYPES:
        raise FrameError(f"frame type must be one of {sorted(FRAME_TYPES)}")
    if not isinstance(task, str) or not 0 < len(task) <= 64:
        raise FrameError("frame task must be a string of 1-64 characters")
    if type(rnd) is not int or rnd < 0:
        raise FrameError("frame round must be a non-negative integer")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise FrameError("frame nonce must be a string of 1-64 characters")
    if dtype not in DTYPE_SIZES:
        raise FrameError(f"frame dtype must be one of {sorted(DTYPE_SIZES)}")
    if (ftype == "masked") != (dtype == _MASKED_DTYPE):
        raise FrameError("frame dtype uint32 goes with type masked, and only with it")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 4
        or not all(type(n) is int and 0 < n < 2**31 for n in shape)
    ):
        raise FrameError("frame shape must be a list of 1-4 positive integers")
    return FrameHeader(ftype, task, rnd, nonce, dtype, tuple(shape), v)


def payload_from_floats(values: Sequence[float], dtype: Dtype = "float32") -> bytes:
    """Encode Python floats as little-endian ``dtype`` values."""
    if dtype == "float32":
        # An array("f") is encoded as it is (one copy); anything else is converted value by value.
        arr = values if isinstance(values, array) and values.typecode == "f" else array("f", values)
        if not _LITTLE:  # pragma: no cover - every supported host is little-endian
            arr = array("f", arr)
            arr.byteswap()
        return arr.tobytes()
    if dtype == "float16":
        return struct.pack(f"<{len(values)}e", *values)
    raise FrameError(f"unsupported dtype {dtype!r}")


def floats_from_payload(payload: bytes | memoryview, dtype: Dtype = "float32") -> list[float]:
    """Decode little-endian ``dtype`` values into Python floats (a copy)."""
    if dtype == "float32":
        arr = array("f")
        arr.frombytes(payload)
        if not _LITTLE:  # pragma: no cover
            arr.byteswap()
        return arr.tolist()
    if dtype == "float16":
        return list(struct.unpack(f"<{len(payload) // 2}e", payload))
    raise FrameError(f"unsupported dtype {dtype!r}")
