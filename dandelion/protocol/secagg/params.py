"""A secure round's parameters, checked once: who takes part, the graph, the threshold, the
fixed-point range and the per-phase timeouts (docs/secure_aggregation.md, Timeouts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import SecAggConfigError
from .fixedpoint import check_range, default_scale_bits
from .graph import check_degree, default_degree, default_threshold

__all__ = ["PHASE_TIMEOUTS", "SecAggParams", "Timeouts"]

#: Default seconds of each phase, in phase order.
PHASE_TIMEOUTS = {"advertise_s": 30.0, "share_s": 30.0, "masked_s": 120.0, "unmask_s": 30.0}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds each phase stays open at most."""

    advertise_s: float = PHASE_TIMEOUTS["advertise_s"]
    share_s: float = PHASE_TIMEOUTS["share_s"]
    masked_s: float = PHASE_TIMEOUTS["masked_s"]
    unmask_s: float = PHASE_TIMEOUTS["unmask_s"]

    def __post_init__(self) -> None:
        for name in PHASE_TIMEOUTS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 86400):
                raise SecAggConfigError(f"timeout {name} must be in (0, 86400] seconds")

    def to_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PHASE_TIMEOUTS}


@dataclass(frozen=True, slots=True)
class SecAggParams:
    """One round's parameters. Build with :meth:`choose` to get the documented defaults."""

    n: int
    degree: int
    threshold: int
    dimension: int
    clip_norm: float
    scale_bits: int
    min_survivors: int
    timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        check_degree(self.n, self.degree)
        if not self.degree // 2 < self.threshold <= self.degree:
            raise SecAggConfigError(
                f"threshold {self.threshold} must be in ({self.degree // 2}, {self.degree}]"
            )
        if type(self.dimension) is not int or not 1 <= self.dimension < 2**28:
            raise SecAggConfigError("dimension must be an integer in [1, 2^28)")
        check_range(self.n, self.clip_norm, self.scale_bits)
        if not 1 <= self.min_survivors <= self.n:
            raise SecAggConfigError(f"min_survivors must be in [1, {self.n}]")

    @classmethod
    def choose(
        cls,
        n: int,
        dimension: int,
        clip_norm: float,
        *,
        degree: int | None = None,
        threshold: int | None = None,
        scale_bits: int | None = None,
        min_survivors: int | None = None,
        timeouts: Timeouts | None = None,
    ) -> SecAggParams:
        """Parameters with every unset one at its default. Raises SecAggConfigError."""
        k = default_degree(n) if degree is None else degree
        t = default_threshold(k) if threshold is None else threshold
        return cls(
            n=n,
            degree=k,
            threshold=t,
            dimension=dimension,
            clip_norm=clip_norm,
            scale_bits=default_scale_bits(n, clip_norm) if scale_bits is None else scale_bits,
            min_survivors=t if min_survivors is None else min_survivors,
            timeouts=timeouts or Timeouts(),
        )
