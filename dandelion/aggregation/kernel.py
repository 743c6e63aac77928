"""The hot path: decode an update in place, measure it, clip it, add it to one float32 sum.

Per update: ``np.frombuffer`` (a view, no copy), one BLAS ``sdot`` for the norm, one BLAS
``saxpy`` that scales and adds in place. Memory is one float32 vector of d values whatever the
number of updates; no update is kept after it is added.

Raises :class:`~dandelion.aggregation.errors.UpdateRejected` for an update of the wrong length or
with non-finite values, always before the sum is touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.linalg.blas import saxpy, sdot

from .errors import UpdateRejected

__all__ = [
    "AddResult",
    "StreamingSum",
    "Weighting",
    "clip_factor",
    "decode_update",
    "l2_norm",
    "single_threaded_blas",
    "update_weight",
]

Weighting = Literal["examples", "uniform"]
_F32 = np.dtype(np.float32)
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def single_threaded_blas() -> None:
    """Keep BLAS on the calling thread for the rest of the process.

    The kernel's vectors (one update) are too small to gain from BLAS threads, and OpenBLAS's
    helper threads spin while they wait: measured here, they more than doubled the coordinator's
    CPU per update. The coordinator calls this at start-up.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def decode_update(payload: memoryview | bytes, dtype: str, count: int) -> np.ndarray:
    """View ``payload`` as ``count`` little-endian values; float32 is zero-copy.

    float16 is widened to a new float32 array (one copy). Raises UpdateRejected("wrong_shape").
    """
    wire = _DTYPES.get(dtype)
    if wire is None:
        raise UpdateRejected("wrong_shape", f"unsupported dtype {dtype!r}")
    if len(payload) != count * wire.itemsize:
        raise UpdateRejected(
            "wrong_shape", f"payload of {len(payload)} bytes is not {count} {dtype} values"
        )
    values: np.ndarray = np.frombuffer(payload, dtype=wire)
    return values if dtype == "float32" else values.astype(np.float32)


def l2_norm(u: np.ndarray) -> float:
    """L2 norm of ``u``: NaN or inf only if ``u`` holds a non-finite value."""
    # BLAS sdot straight from scipy: float32 accumulation, fast and accurate enough for
    # clipping, and none of numpy's floating-point error bookkeeping (an overflow to inf is
    # expected for huge or non-finite values and handled below).
    sq = float(sdot(u, u))
    if math.isfinite(sq):
        return math.sqrt(sq)
    if not np.isfinite(u).all():
        return math.nan
    # Finite values whose squares overflow float32: scale down, accumulate in float64.
    peak = float(np.max(np.abs(u)))
    scaled = u.astype(np.float64) / peak
    return peak * math.sqrt(float(np.dot(scaled, scaled)))


def clip_factor(norm: float, bound: float) -> float:
    """The scale that brings a vector of ``norm`` within ``bound``: min(1, bound / norm)."""
    return 1.0 if norm <= bound or norm == 0.0 else bound / norm


def update_weight(num_examples: int, weighting: str, max_examples: int | None = None) -> float:
    """An update's weight in the mean: its example count (capped), or 1."""
    if weighting == "uniform":
        return 1.0
    if weighting != "examples":
        raise ValueError(f"weighting must be 'examples' or 'uniform', not {weighting!r}")
    n = max(1, num_examples)
    return float(min(n, max_examples) if max_examples else n)


@dataclass(frozen=True, slots=True)
class AddResult:
    norm: float  # the update's norm as received
    clipped: bool  # whether the server scaled it down
    scale: float  # the factor applied (weight excluded)


class StreamingSum:
    """A running weighted sum of clipped updates in one float32 vector of ``d`` values."""

    def __init__(self, d: int) -> None:
        self._sum = np.zeros(d, dtype=np.float32)
        self.count = 0
        self.total_weight = 0.0

    @property
    def d(self) -> int:
        return self._sum.size

    @property
    def sum(self) -> np.ndarray:
        """A read-only view of the running sum."""
        view = self._sum.view()
        view.flags.writeable = False
        return view

    def add(self, update: np.ndarray, *, weight: float, bound: float) -> AddResult:
        """Clip ``update`` to L2 ``bound`` and add ``weight`` times it. Raises UpdateRejected."""
        total = self._sum
        if update.ndim != 1 or update.size != total.size:
            raise UpdateRejected(
                "wrong_shape", f"update has shape {update.shape}, sum has {total.shape}"
            )
        if update.dtype != _F32:
            update = update.astype(np.float32)
        norm = l2_norm(update)
        if not math.isfinite(norm):
            raise UpdateRejected("non_finite", "update holds NaN or infinite values")
        scale = 1.0 if norm <= bound else bound / norm
        out = saxpy(update, total, a=weight * scale)
        # saxpy works in place on a contiguous float32 y; anything else would be a silent copy.
        assert out is total
        self.count += 1
        self.total_weight += weight
        return AddResult(norm, scale < 1.0, scale)

    def mean(self) -> np.ndarray:
        """The weighted mean so far, as a new float32 array. Raises ValueError when empty."""
        if self.total_weight <= 0:
            raise ValueError("no update has been added")
        return (self._sum / np.float32(self.total_weight)).astype(np.float32)

    def merge(self, other: StreamingSum) -> None:
        """Add another running sum (over other updates) into this one."""
        if other.d != self.d:
            raise ValueError(f"cannot merge a sum of {other.d} values into one of {self.d}")
        out = saxpy(other._sum, self._sum, a=1.0)
        assert out is self._sum
        self.count += other.count
        self.total_weight += other.total_weight

    def load(self, values: np.ndarray, count: int, total_weight: float) -> None:
        """Replace the sum by ``values`` (a checkpoint's), with its count and weight."""
        if values.shape != self._sum.shape:
            raise ValueError(f"cannot load {values.shape} values into a sum of {self._sum.shape}")
        np.copyto(self._sum, values)
        self.count = count
        self.total_weight = float(total_weight)

    def reset(self) -> None:
        self._sum.fill(0.0)
        self.count = 0
        self.total_weight = 0.0
