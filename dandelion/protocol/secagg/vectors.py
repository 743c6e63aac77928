"""Vectors in Z/2^32: d little-endian unsigned 32-bit values in a ``bytearray``, and the
encoding of an update into one.

The protocol adds and subtracts masks through a :class:`Mod32Ops` it is given, so that a host
can bring a fast path (numpy on CPython: :class:`dandelion.crypto.NumpyMod32`; typed arrays in
the browser). :class:`StdlibMod32` is the reference, standard library only; every
implementation gives the same bytes.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from array import array
from collections.abc import Sequence

from .errors import SecAggViolation

__all__ = ["MASK32", "Buffer", "Mod32Ops", "StdlibMod32", "check_vector_bytes"]

MASK32 = 0xFFFFFFFF
Buffer = bytes | bytearray | memoryview
_LITTLE = sys.byteorder == "little"


def check_vector_bytes(data: Buffer, d: int) -> None:
    """Raise SecAggViolation unless ``data`` holds exactly d values of 4 bytes."""
    size = memoryview(data).nbytes
    if size != 4 * d:
        raise SecAggViolation(f"a vector of {d} values holds {4 * d} bytes, not {size}")


class Mod32Ops(ABC):
    """Element-wise arithmetic modulo 2^32 on little-endian byte vectors of one length."""

    def zeros(self, d: int) -> bytearray:
        """A vector of d zeros."""
        return bytearray(4 * d)

    def encode(self, values: Sequence[float], clip_norm: float, scale_bits: int) -> bytes:
        """The fixed-point encoding of a clipped update
        (:func:`~dandelion.protocol.secagg.fixedpoint.encode`). A host may bring a faster one;
        it must give the same bytes. Raises SecAggConfigError for a non-finite value."""
        from .fixedpoint import encode  # fixedpoint imports this module's types

        return encode(values, clip_norm, scale_bits)

    @abstractmethod
    def add_into(self, acc: bytearray, other: Buffer) -> None:
        """``acc += other`` (mod 2^32), in place."""

    @abstractmethod
    def sub_into(self, acc: bytearray, other: Buffer) -> None:
        """``acc -= other`` (mod 2^32), in place."""


def _values(data: Buffer) -> array[int]:
    arr = array("I")
    assert arr.itemsize == 4, "array('I') must hold 32-bit values"
    arr.frombytes(data)
    if not _LITTLE:  # pragma: no cover - every supported host is little-endian
        arr.byteswap()
    return arr


def _store(acc: bytearray, values: list[int]) -> None:
    arr = array("I", values)
    if not _LITTLE:  # pragma: no cover
        arr.byteswap()
    acc[:] = arr.tobytes()


class StdlibMod32(Mod32Ops):
    """The reference implementation on :mod:`array` (about 10 M values per second on CPython)."""

    def add_into(self, acc: bytearray, other: Buffer) -> None:
        if len(acc) != memoryview(other).nbytes:
            raise ValueError("vectors of different lengths")
        _store(acc, [(x + y) & MASK32 for x, y in zip(_values(acc), _values(other), strict=True)])

    def sub_into(self, acc: bytearray, other: Buffer) -> None:
        if len(acc) != memoryview(other).nbytes:
            raise ValueError("vectors of different lengths")
        _store(acc, [(x - y) & MASK32 for x, y in zip(_values(acc), _values(other), strict=True)])
