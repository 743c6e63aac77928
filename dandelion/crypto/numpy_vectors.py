"""Mod-2^32 vector operations on numpy: uint32 addition wraps, in place, without copies; and
the fixed-point encoding, vectorised (the same IEEE-754 double operations in the same order as
the reference, so the same bytes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dandelion.protocol.secagg.errors import SecAggConfigError
from dandelion.protocol.secagg.vectors import MASK32, Buffer, Mod32Ops

__all__ = ["NumpyMod32"]

_U32 = np.dtype("<u4")


class NumpyMod32(Mod32Ops):
    """:class:`Mod32Ops` on numpy views of the byte vectors (the same bytes as the reference)."""

    def encode(self, values: Sequence[float], clip_norm: float, scale_bits: int) -> bytes:
        x = np.asarray(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            i = int(bad[0])
            raise SecAggConfigError(f"value {i} is not finite: {float(x[i])!r}")
        q = np.floor(np.clip(x, -clip_norm, clip_norm) * float(2**scale_bits) + 0.5)
        return (q.astype(np.int64) & MASK32).astype(_U32).tobytes()

    def add_into(self, acc: bytearray, other: Buffer) -> None:
        view = np.frombuffer(acc, dtype=_U32)
        np.add(view, np.frombuffer(other, dtype=_U32), out=view)

    def sub_into(self, acc: bytearray, other: Buffer) -> None:
        view = np.frombuffer(acc, dtype=_U32)
        np.subtract(view, np.frombuffer(other, dtype=_U32), out=view)
