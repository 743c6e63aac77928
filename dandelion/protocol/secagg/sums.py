"""Where a secure round's masked vectors go: a :class:`MaskedSum` holds their sum mod 2^32 and
nothing else, until the server hands it the masks' total to take away.

Rules of this file: an interface and its standard-library reference. The coordinator brings
its own implementation (``dandelion.aggregation.SecureAggregate``, on numpy, with a byte form
for checkpoints) behind the same interface, so the state machine never holds a vector itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .vectors import Buffer, Mod32Ops, StdlibMod32, check_vector_bytes

__all__ = ["MaskedSum", "RunningMaskedSum"]


class MaskedSum(ABC):
    """The running sum of a round's masked vectors (d little-endian uint32 values)."""

    @abstractmethod
    def add_masked(self, payload: Buffer) -> None:
        """Add one masked vector. Raises SecAggViolation when it is not d values."""

    @abstractmethod
    def unmask(self, correction: Buffer) -> bytes:
        """Take away the masks' total (``sum - correction`` mod 2^32); return the unmasked sum.
        Nothing more can be added afterwards."""

    @abstractmethod
    def discard(self) -> None:
        """Forget the sum: the round was abandoned."""


class RunningMaskedSum(MaskedSum):
    """The reference: one ``bytearray`` and the injected vector operations."""

    def __init__(self, d: int, ops: Mod32Ops | None = None) -> None:
        self.d = d
        self.ops = ops or StdlibMod32()
        self._total: bytearray | None = self.ops.zeros(d)

    @property
    def holds_sum(self) -> bool:
        """True until the sum is unmasked or discarded."""
        return self._total is not None

    def add_masked(self, payload: Buffer) -> None:
        check_vector_bytes(payload, self.d)
        if self._total is None:
            raise ValueError("the sum was unmasked or discarded")
        self.ops.add_into(self._total, payload)

    def unmask(self, correction: Buffer) -> bytes:
        if self._total is None:
            raise ValueError("the sum was unmasked or discarded")
        total, self._total = self._total, None
        self.ops.sub_into(total, correction)
        return bytes(total)

    def discard(self) -> None:
        self._total = None
