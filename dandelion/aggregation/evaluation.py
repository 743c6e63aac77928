"""An evaluation round's running aggregate: the sums of its workers' reports, bounded.

Rules of this file: maths and bytes only, like ``aggregate.py``. Each report is three sums over
one worker's held-out examples — ``count``, ``loss_sum``, ``correct`` — and is *bounded* before
it is added, whatever the worker sent: ``count`` to ``max_examples`` (``loss_sum`` and
``correct`` scaled by the same factor, so the worker's means are kept), then ``loss_sum`` to
``max_loss x count`` and ``correct`` to ``count``. One worker therefore moves the sums by at
most ``max_examples``, ``max_loss x max_examples`` and ``max_examples``: the sensitivities the
private release (``dandelion.privacy.evaluation``) noises against. What is held is sums over
reports, never one report.

The byte form (a round's checkpoint): ``b"DEV1"`` then UTF-8 JSON of the four figures. Raises
ValueError for bytes that are not such a form.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["EvalBounds", "EvalSums"]

_MAGIC = b"DEV1"


@dataclass(frozen=True, slots=True)
class EvalBounds:
    """What one report may add at most: ``max_examples`` examples, ``max_loss`` per example."""

    max_examples: int
    max_loss: float

    def bound(self, count: float, loss_sum: float, correct: float) -> tuple[float, float, float]:
        """A report's sums as they are added. Raises ValueError for sums that are negative,
        not finite, or a count below 1 (the wire contract refuses them before this)."""
        figures = (count, loss_sum, correct)
        if not all(math.isfinite(x) and x >= 0 for x in figures) or count < 1:
            raise ValueError(f"eval sums must be finite, >= 0, count >= 1: {figures}")
        if count > self.max_examples:
            scale = self.max_examples / count
            count, loss_sum, correct = self.max_examples, loss_sum * scale, correct * scale
        return float(count), min(loss_sum, self.max_loss * count), min(correct, count)


class EvalSums:
    """The sums over an evaluation round's reports: ``reports`` (``count``, as for a training
    aggregate), ``examples`` (the summed ``count`` of the reports), ``loss_sum``, ``correct``."""

    def __init__(self) -> None:
        self.reports = 0
        self.examples = 0.0
        self.loss_sum = 0.0
        self.correct = 0.0

    @property
    def count(self) -> int:
        """Reports added (what a round counts towards its goal and its checkpoints)."""
        return self.reports

    def add(self, count: float, loss_sum: float, correct: float, bounds: EvalBounds) -> None:
        """Bound one report's sums and add them. Raises ValueError before anything changes."""
        c, loss, right = bounds.bound(count, loss_sum, correct)
        self.reports += 1
        self.examples += c
        self.loss_sum += loss
        self.correct += right

    def merge(self, other: EvalSums) -> None:
        self.reports += other.reports
        self.examples += other.examples
        self.loss_sum += other.loss_sum
        self.correct += other.correct

    def copy(self) -> EvalSums:
        twin = EvalSums()
        twin.merge(self)
        return twin

    def to_bytes(self) -> bytes:
        figures: dict[str, Any] = {
            "reports": self.reports,
            "examples": self.examples,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
        }
        return _MAGIC + json.dumps(figures, allow_nan=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EvalSums:
        """Rebuild from :meth:`to_bytes`. Raises ValueError."""
        if data[:4] != _MAGIC:
            raise ValueError("not evaluation sums (bad magic)")
        try:
            figures = json.loads(data[4:])
            out = cls()
            out.reports = int(figures["reports"])
            out.examples = float(figures["examples"])
            out.loss_sum = float(figures["loss_sum"])
            out.correct = float(figures["correct"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not evaluation sums: {exc}") from None
        return out
