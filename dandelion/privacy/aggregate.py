"""DP-FedAvg as a wrapper around a round's aggregate (the way Flower wraps a strategy).

Rules of this file: it adds nothing to how updates are summed — adding, merging and the byte
form are the inner :class:`~dandelion.aggregation.Aggregate`'s — and changes only what leaves:
:meth:`PrivateAggregate.release` noises the sum (and, with adaptive clipping, the count of
unclipped bits) with the generator the caller passes in, and :meth:`metrics` shows only released
figures. The workers' own metrics (loss, accuracy, norms) are not noised, so they never leave.
"""

from __future__ import annotations

import numpy as np

from ..aggregation import Aggregate, Contribution
from ..aggregation.kernel import AddResult
from .config import PrivacyConfig
from .mechanism import Release, release

__all__ = ["PrivateAggregate"]


class PrivateAggregate:
    """An aggregate whose output is DP-FedAvg's release with clip bound ``clip_norm``."""

    def __init__(self, inner: Aggregate, config: PrivacyConfig, clip_norm: float) -> None:
        self.inner = inner
        self.config = config
        self.clip_norm = clip_norm

    @property
    def count(self) -> int:
        return self.inner.count

    def add(self, values: np.ndarray, contribution: Contribution, bound: float) -> AddResult:
        return self.inner.add(values, contribution, bound)

    def merge(self, other: Aggregate) -> None:
        self.inner.merge(other)

    def to_bytes(self) -> bytes:
        return self.inner.to_bytes()

    def release(self, rng: np.random.Generator) -> Release | None:
        """The round's private output, or None when nothing was added."""
        inner = self.inner
        if inner.count == 0:
            return None
        return release(
            self.config, inner.sum, inner.unclipped_bits, inner.count, self.clip_norm, rng
        )
