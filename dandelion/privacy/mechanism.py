"""DP-FedAvg's release (McMahan et al. 2018; adaptive clipping from Andrew et al. 2021): what
a round publishes, given the sum of its clipped updates.

A round adds each report clipped to L2 norm C with weight 1 (the coordinator does that, see
``dandelion.aggregation``), so adding or removing one user moves the sum by at most C. The
release is ``(sum + N(0, (z_Δ C)² I)) / n``, with ``n`` the expected number of reports fixed in
advance. With adaptive clipping the noised count of unclipped bits moves C for the next round:
each report's bit enters centred, as ``b - 1/2``, so adding or removing one user moves the
count by at most 1/2 (Andrew et al. 2021, Theorem 1; TensorFlow Privacy's quantile estimator
does the same) — which is what makes the bit noise worth ``(2 sigma_b)^-2`` in the noise split.
Pure functions of their inputs and the passed-in generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .adaptive import next_clip_norm
from .config import PrivacyConfig
from .noise import noisy_count, noisy_mean

__all__ = ["Release", "release"]


@dataclass(frozen=True, slots=True)
class Release:
    """One round's private output."""

    mean: np.ndarray  # noised sum / fixed denominator: the update the server optimizer applies
    clip_norm: float  # C of this round
    next_clip_norm: float  # C of the next round (== clip_norm with fixed clipping)
    noise_std: float  # std of the noise added to each coordinate of the sum
    unclipped_fraction: float | None  # noised b̄ (adaptive clipping only)

    def metrics(self) -> dict[str, float]:
        """The figures a round record may keep: every one of them is a DP output."""
        out = {"clip_norm": self.clip_norm, "noise_std": self.noise_std}
        if self.unclipped_fraction is not None:
            out["next_clip_norm"] = self.next_clip_norm
            out["unclipped_fraction_noised"] = self.unclipped_fraction
        return out


def release(
    config: PrivacyConfig,
    total: np.ndarray,
    unclipped_bits: int,
    reports: int,
    clip_norm: float,
    rng: np.random.Generator,
) -> Release:
    """Noise ``total`` (the sum of ``reports`` updates clipped to ``clip_norm``, weight 1 each)
    and, with adaptive clipping, the count of ``unclipped_bits``; return the round's release.

    The noised fraction is ``(sum(b - 1/2) + N(0, sigma_b^2)) / n + 1/2``: the centred sum is the
    private query, the rest post-processing with the fixed n."""
    n = float(config.expected_reports)
    std = config.update_noise_multiplier * clip_norm
    mean = noisy_mean(total, std, n, rng)
    if not config.adaptive:
        return Release(mean, clip_norm, clip_norm, std, None)
    centred = unclipped_bits - reports / 2
    fraction = noisy_count(centred, config.bit_noise_std, rng) / n + 0.5
    nxt = next_clip_norm(clip_norm, fraction, config.target_quantile, config.clip_learning_rate)
    return Release(mean, clip_norm, nxt, std, fraction)
