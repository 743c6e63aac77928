"""The fixed-point encoding of a clipped update into Z/2^32, and the decoding of a sum.

``q = floor(clamp(x, -C, C) * 2^f + 1/2)`` taken mod 2^32. A sum of n encoded vectors is exact
(read as signed 32-bit) while ``n * (C * 2^f + 1/2) < 2^31``: :func:`check_range` refuses
parameters that break this, :func:`default_scale_bits` picks the largest f that keeps it.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence

from .errors import SecAggConfigError
from .vectors import MASK32, Buffer

__all__ = [
    "MAX_SCALE_BITS",
    "check_range",
    "decode_sum",
    "default_scale_bits",
    "encode",
    "fits",
]

#: The largest scale the encoding takes (2^24: beyond float32 resolution for |x| >= 1).
MAX_SCALE_BITS = 24
_LIMIT = 2**31
_LITTLE = sys.byteorder == "little"


def fits(n: int, clip_norm: float, scale_bits: int) -> bool:
    """True when n encoded values of magnitude <= clip_norm cannot wrap around."""
    return bool(n * (clip_norm * 2**scale_bits + 0.5) < _LIMIT)


def check_range(n: int, clip_norm: float, scale_bits: int) -> None:
    """Raise SecAggConfigError unless the sum of n encoded updates is exact."""
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise SecAggConfigError(f"clip_norm must be a positive number, not {clip_norm!r}")
    if type(scale_bits) is not int or not 0 <= scale_bits <= MAX_SCALE_BITS:
        raise SecAggConfigError(f"scale_bits must be an integer in [0, {MAX_SCALE_BITS}]")
    if n < 1 or not fits(n, clip_norm, scale_bits):
        raise SecAggConfigError(
            f"{n} updates clipped to {clip_norm} at scale 2^{scale_bits} can wrap around "
            f"2^32: lower scale_bits (at most {default_scale_bits(n, clip_norm)} fits)"
        )


def default_scale_bits(n: int, clip_norm: float) -> int:
    """The largest f <= MAX_SCALE_BITS with which n updates clipped to clip_norm sum exactly.

    Raises SecAggConfigError when even f = 0 does not fit (n * clip_norm near 2^31)."""
    for bits in range(MAX_SCALE_BITS, -1, -1):
        if fits(n, clip_norm, bits):
            return bits
    raise SecAggConfigError(f"{n} updates clipped to {clip_norm} cannot be summed in 32 bits")


def encode(values: Sequence[float], clip_norm: float, scale_bits: int) -> bytes:
    """Encode floats as little-endian uint32. Raises SecAggConfigError for a non-finite value."""
    scale = float(2**scale_bits)
    out = array("I", bytes(4 * len(values)))
    for i, x in enumerate(values):
        if not math.isfinite(x):
            raise SecAggConfigError(f"value {i} is not finite: {x!r}")
        clamped = min(max(x, -clip_norm), clip_norm)
        out[i] = math.floor(clamped * scale + 0.5) & MASK32
    if not _LITTLE:  # pragma: no cover
        out.byteswap()
    return out.tobytes()


def decode_sum(total: Buffer, scale_bits: int) -> list[float]:
    """Read a sum (little-endian uint32) as signed 32-bit values divided by 2^scale_bits."""
    arr = array("I")
    arr.frombytes(total)
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    scale = float(2**scale_bits)
    return [(v - (1 << 32) if v >= _LIMIT else v) / scale for v in arr]
