"""A round's running aggregate as one object: add, merge, result, and a byte form.

Rules of this file: maths and bytes only — no clock, no storage, no randomness (a private
release takes its generator from the caller, see ``dandelion.privacy.aggregate``). What it holds
is a sum over updates, never an update: the float32 sum of the clipped, weighted updates; the
total weight; and the counts the round record and monitoring need (reports, clipped, unclipped
bits, norms, weighted loss and accuracy). Two aggregates over disjoint sets of updates merge
into the aggregate of their union, so a round can be checkpointed (``to_bytes``) and resumed
(``from_bytes``), and partial aggregates of several processes can be combined.

The byte form: ``b"DAG1"``, a little-endian u32 ``n``, ``n`` bytes of UTF-8 JSON (the counts and
``d``), then ``d`` little-endian float32 values of the sum. Raises ValueError for bytes that are
not such a form.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .kernel import AddResult, StreamingSum

__all__ = ["Aggregate", "Aggregator", "Contribution"]

_MAGIC = b"DAG1"
_COUNTS = (
    "count",
    "weight",
    "clipped",
    "unclipped_bits",
    "norm_sum",
    "loss_sum",
    "accuracy_sum",
    "metric_weight",
)


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one update brings besides its vector: its weight in the mean, the unclipped bit
    as the server observed it (0 or 1), and its reported loss and accuracy (None if absent)."""

    weight: float
    bit: int = 0
    loss: float | None = None
    accuracy: float | None = None


class Aggregator(Protocol):
    """What a round needs of its aggregate, whatever holds it (plain sum, DP, secure sum)."""

    @property
    def count(self) -> int: ...

    def add(self, values: np.ndarray, contribution: Contribution, bound: float) -> AddResult:
        """Clip ``values`` to L2 ``bound``, add it with its weight. Raises UpdateRejected."""

    def merge(self, other: Aggregate) -> None:
        """Add ``other`` (an aggregate over other updates) into this one."""

    def to_bytes(self) -> bytes: ...


class Aggregate:
    """The plain aggregate: a streaming clipped sum plus its counts."""

    def __init__(self, d: int) -> None:
        self._sum = StreamingSum(d)
        self.clipped = 0
        self.unclipped_bits = 0
        self.norm_sum = 0.0
        self.loss_sum = 0.0
        self.accuracy_sum = 0.0
        self.metric_weight = 0.0  # weight of the updates that reported loss and accuracy

    # -- reading ---------------------------------------------------------------------------------

    @property
    def d(self) -> int:
        return self._sum.d

    @property
    def count(self) -> int:
        return self._sum.count

    @property
    def weight(self) -> float:
        return self._sum.total_weight

    @property
    def sum(self) -> np.ndarray:
        """A read-only view of the weighted clipped sum."""
        return self._sum.sum

    def mean(self) -> np.ndarray | None:
        """The weighted mean update, or None when nothing was added."""
        if self.weight <= 0:
            return None
        return self._sum.mean()

    def metrics(self) -> dict[str, float]:
        """Means over the updates of this aggregate (never one update's figures when count >= 2;
        the caller decides whether the count is large enough to show)."""
        out: dict[str, float] = {}
        if self.metric_weight > 0:
            out["loss"] = self.loss_sum / self.metric_weight
            out["accuracy"] = self.accuracy_sum / self.metric_weight
        if self.count:
            out["mean_norm"] = self.norm_sum / self.count
            out["clipped_fraction"] = self.clipped / self.count
            out["unclipped_fraction"] = self.unclipped_bits / self.count
        return {k: v for k, v in out.items() if math.isfinite(v)}

    # -- writing ---------------------------------------------------------------------------------

    def add(self, values: np.ndarray, contribution: Contribution, bound: float) -> AddResult:
        """Clip and add one update. Raises UpdateRejected before anything changes."""
        result = self._sum.add(values, weight=contribution.weight, bound=bound)
        self.clipped += int(result.clipped)
        self.unclipped_bits += contribution.bit
        self.norm_sum += result.norm
        loss, accuracy = contribution.loss, contribution.accuracy
        if loss is not None and accuracy is not None:
            w = contribution.weight
            self.loss_sum += w * loss
            self.accuracy_sum += w * accuracy
            self.metric_weight += w
        return result

    def merge(self, other: Aggregate) -> None:
        """Add ``other`` into this aggregate. Raises ValueError when the sizes differ."""
        if other.d != self.d:
            raise ValueError(f"cannot merge an aggregate of {other.d} values into one of {self.d}")
        self._sum.merge(other._sum)
        self.clipped += other.clipped
        self.unclipped_bits += other.unclipped_bits
        self.norm_sum += other.norm_sum
        self.loss_sum += other.loss_sum
        self.accuracy_sum += other.accuracy_sum
        self.metric_weight += other.metric_weight

    def copy(self) -> Aggregate:
        twin = Aggregate(self.d)
        twin.merge(self)
        return twin

    # -- bytes -----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        counts: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        counts["d"] = self.d
        head = json.dumps(counts, allow_nan=False, separators=(",", ":")).encode()
        body = self.sum.astype("<f4", copy=False).tobytes()
        return _MAGIC + struct.pack("<I", len(head)) + head + body

    @classmethod
    def from_bytes(cls, data: bytes) -> Aggregate:
        """Rebuild an aggregate from :meth:`to_bytes`. Raises ValueError."""
        if len(data) < 8 or data[:4] != _MAGIC:
            raise ValueError("not an aggregate (bad magic)")
        (n,) = struct.unpack_from("<I", data, 4)
        try:
            counts = json.loads(data[8 : 8 + n])
            d = int(counts["d"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not an aggregate: {exc}") from None
        body = data[8 + n :]
        if len(body) != 4 * d:
            raise ValueError(f"aggregate body of {len(body)} bytes is not {d} float32 values")
        out = cls(d)
        out._sum.load(np.frombuffer(body, dtype="<f4"), int(counts["count"]), counts["weight"])
        for name in _COUNTS[2:]:
            setattr(out, name, type(getattr(out, name))(counts[name]))
        return out
