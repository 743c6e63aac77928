"""What an evaluation round releases under ``[privacy]``, and what the ledger charges for it.

An evaluation round's reports are summed after each is bounded
(``dandelion.aggregation.evaluation``): adding or removing one worker moves the three sums by at
most ``max_examples`` (count), ``max_loss x max_examples`` (loss_sum) and ``max_examples``
(correct). Each released sum gets Gaussian noise of sigma = z x its bound, from the round's own
secure generator (``noise.secure_generator``). Scaled by its bound, the three sums are one
vector query of L2 sensitivity √3 (a worker may move all three by their full bound at once)
with noise z per coordinate: one Gaussian mechanism of noise multiplier z / √3. That is what
the ledger charges per released round — ``GaussianDpEvent(z / √3)``, never sampled (any worker
may take part, as often as it checks in) — composed with the task's training rounds by the
same accountant. The means (loss, accuracy) are ratios of the noised sums: post-processing.

Without privacy the sums are released as they are. Pure functions of their inputs and the
passed-in generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..aggregation.evaluation import EvalBounds, EvalSums
from .accountant import RoundEvent

__all__ = ["EvalRelease", "evaluation_event", "release_sums", "sensitivities"]


@dataclass(frozen=True, slots=True)
class EvalRelease:
    """An evaluation round's output: the three sums (noised under privacy), the noise scale
    of each (0 without privacy) and the multiplier z it came from (None without privacy)."""

    count: float
    loss_sum: float
    correct: float
    noise_std: tuple[float, float, float]
    noise_multiplier: float | None
    max_loss: float

    @property
    def loss(self) -> float | None:
        """Mean loss per example, in [0, max_loss] (None when the count is not positive)."""
        if not self.count > 0:
            return None
        return min(max(self.loss_sum / self.count, 0.0), self.max_loss)

    @property
    def accuracy(self) -> float | None:
        """Fraction of examples classified right, in [0, 1] (None when the count is not
        positive)."""
        if not self.count > 0:
            return None
        return min(max(self.correct / self.count, 0.0), 1.0)


def sensitivities(bounds: EvalBounds) -> tuple[float, float, float]:
    """How far one worker moves each sum at most: count, loss_sum, correct."""
    m = float(bounds.max_examples)
    return m, bounds.max_loss * m, m


def release_sums(
    sums: EvalSums,
    bounds: EvalBounds,
    noise_multiplier: float | None,
    rng: np.random.Generator | None,
) -> EvalRelease:
    """The round's release: the sums, plus N(0, (z x bound)²) each when ``noise_multiplier``
    (z) is given — then ``rng`` must be the round's secure generator. Raises ValueError for a
    z that is not positive."""
    exact = (sums.examples, sums.loss_sum, sums.correct)
    if noise_multiplier is None:
        return EvalRelease(*exact, (0.0, 0.0, 0.0), None, bounds.max_loss)
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise multiplier must be positive, got {noise_multiplier}")
    if rng is None:
        raise ValueError("a private release needs its noise generator")
    std = tuple(noise_multiplier * s for s in sensitivities(bounds))
    noise = rng.normal(0.0, 1.0, size=3) * np.asarray(std)
    noised = [float(x + n) for x, n in zip(exact, noise, strict=True)]
    return EvalRelease(
        noised[0], noised[1], noised[2], (std[0], std[1], std[2]), noise_multiplier, bounds.max_loss
    )


def evaluation_event(noise_multiplier: float) -> RoundEvent:
    """What one released evaluation round costs: a Gaussian mechanism (no sampling, q = 1)
    of multiplier z / √3 — the three sums' noise together."""
    return RoundEvent(1.0, noise_multiplier / math.sqrt(3.0))
