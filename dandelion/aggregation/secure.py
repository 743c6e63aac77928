"""The aggregate of a secure round (docs/secure_aggregation.md): it holds the sum of the
round's masked vectors modulo 2^32 and nothing else until the round's unmasking, then the
decoded sum of the survivors' clipped updates.

Rules of this file: maths and bytes only. It implements the protocol's
:class:`~dandelion.protocol.secagg.sums.MaskedSum`, so the secure round's state machine adds
masked vectors straight into it; it never sees a plaintext update (:meth:`add` refuses one),
and every figure it shows is of the sum. Partial aggregates of shards merge before the
unmasking (the masks cancel only in the whole sum). The byte form, for checkpoints:
``b"DSA1"``, a little-endian u32 ``n``, ``n`` bytes of UTF-8 JSON (``d``, ``scale_bits``,
``count``), then ``d`` little-endian uint32 values of the masked sum. Raises ValueError for
bytes that are not such a form.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from dandelion.protocol.secagg.sums import MaskedSum
from dandelion.protocol.secagg.vectors import Buffer, check_vector_bytes

from .aggregate import Contribution
from .errors import UpdateRejected
from .kernel import AddResult

__all__ = ["SecureAggregate"]

_MAGIC = b"DSA1"
_U32 = np.dtype("<u4")


class SecureAggregate(MaskedSum):
    """A secure round's aggregate: masked until :meth:`unmask`, then the decoded sum."""

    def __init__(self, d: int, scale_bits: int) -> None:
        self.d = d
        self.scale_bits = scale_bits
        self._masked: np.ndarray | None = np.zeros(d, dtype=_U32)
        self._sum: np.ndarray | None = None
        self._count = 0

    # -- reading ---------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Masked vectors added (the survivors of the masked-input phase)."""
        return self._count

    @property
    def unmasked(self) -> bool:
        return self._sum is not None

    @property
    def sum(self) -> np.ndarray:
        """The float32 sum of the survivors' updates. Raises LookupError before the unmasking."""
        if self._sum is None:
            raise LookupError("a secure aggregate has no sum before the round's unmasking")
        view = self._sum.view()
        view.flags.writeable = False
        return view

    def mean(self) -> np.ndarray | None:
        """The sum over the count (every update weighs one: weights would reveal), or None."""
        if self._sum is None or self._count == 0:
            return None
        return (self._sum / np.float32(self._count)).astype(np.float32)

    def metrics(self) -> dict[str, float]:
        """Nothing of one update is known: no norms, losses or clipping fractions."""
        return {}

    # -- writing ---------------------------------------------------------------------------------

    def add(self, values: np.ndarray, contribution: Contribution, bound: float) -> AddResult:
        """A secure round never takes a plaintext update. Raises UpdateRejected (``wrong_shape``:
        the round wants a masked uint32 frame, not a float update)."""
        raise UpdateRejected("wrong_shape", "a secure round takes masked vectors only")

    def add_masked(self, payload: Buffer) -> None:
        check_vector_bytes(payload, self.d)
        masked = self._open()
        np.add(masked, np.frombuffer(payload, dtype=_U32), out=masked)
        self._count += 1

    def merge(self, other: SecureAggregate) -> None:
        """Add another shard's masked sum into this one, before the unmasking. Raises
        ValueError for another size or scale, or an aggregate already unmasked."""
        if (other.d, other.scale_bits) != (self.d, self.scale_bits):
            raise ValueError("cannot merge secure aggregates of other sizes or scales")
        masked = self._open()
        np.add(masked, other._open(), out=masked)
        self._count += other._count

    def unmask(self, correction: Buffer) -> bytes:
        """Take away the masks' total and decode: signed 32-bit over 2^scale_bits."""
        check_vector_bytes(correction, self.d)
        masked = self._open()
        np.subtract(masked, np.frombuffer(correction, dtype=_U32), out=masked)
        self._masked = None
        raw = masked.tobytes()
        self._sum = (masked.view(np.int32) / float(2**self.scale_bits)).astype(np.float32)
        return raw

    def discard(self) -> None:
        self._masked = None
        self._count = 0

    def _open(self) -> np.ndarray:
        if self._masked is None:
            raise ValueError("the secure aggregate was unmasked or discarded")
        return self._masked

    # -- bytes -----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The masked sum and its counts (a checkpoint before the unmasking)."""
        masked = self._open()
        head = json.dumps(
            {"d": self.d, "scale_bits": self.scale_bits, "count": self._count},
            separators=(",", ":"),
        ).encode()
        return _MAGIC + struct.pack("<I", len(head)) + head + masked.astype(_U32).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecureAggregate:
        """Rebuild from :meth:`to_bytes`. Raises ValueError."""
        if len(data) < 8 or data[:4] != _MAGIC:
            raise ValueError("not a secure aggregate (bad magic)")
        (n,) = struct.unpack_from("<I", data, 4)
        try:
            head = json.loads(data[8 : 8 + n])
            d, bits, count = int(head["d"]), int(head["scale_bits"]), int(head["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a secure aggregate: {exc}") from None
        body = data[8 + n :]
        if len(body) != 4 * d:
            raise ValueError(f"secure aggregate body of {len(body)} bytes is not {d} values")
        out = cls(d, bits)
        out._masked = np.frombuffer(body, dtype=_U32).copy()
        out._count = count
        return out
