"""Mod-2^32 vector operations on numpy: uint32 addition wraps, in place, without copies."""

from __future__ import annotations

import numpy as np

from dandelion.protocol.secagg.vectors import Buffer, Mod32Ops

__all__ = ["NumpyMod32"]

_U32 = np.dtype("<u4")


class NumpyMod32(Mod32Ops):
    """:class:`Mod32Ops` on numpy views of the byte vectors (the same bytes as the reference)."""

    def add_into(self, acc: bytearray, other: Buffer) -> None:
        view = np.frombuffer(acc, dtype=_U32)
        np.add(view, np.frombuffer(other, dtype=_U32), out=view)

    def sub_into(self, acc: bytearray, other: Buffer) -> None:
        view = np.frombuffer(acc, dtype=_U32)
        np.subtract(view, np.frombuffer(other, dtype=_U32), out=view)
