"""DP-FedAvg's release (McMahan et al. 2018; adaptive clipping from Andrew et al. 2021): what
a round publishes, given the sum of its clipped updates.

A round adds each report clipped to L2 norm C with weight 1 (the coordinator does that, see
``dandelion.aggregation``), so adding or removing one user moves the sum by at most C. The
release is ``(sum + N(0, (z_Δ C)² I)) / n``, with ``n`` the expected number of reports fixed in
advance. With adaptive clipping the noised count of unclipped bits moves C for the next round:
each report's bit enters centred, as ``b - 1/2``, so adding or removing one user moves the
count by at most 1/2 (Andrew et al. 2021, Theorem 1; TensorFlow Privacy's quantile estimator
does the same) — which is what makes the bit noise worth ``(2 sigma_b)^-2`` in the noise split.

:func:`ftrl_release` is DP-FTRL's (Kairouz et al. 2021): the round's clipped sum plus the tree
noise of its step (``dandelion.privacy.ftrl``), so that the sum of a tree's releases is the
noisy prefix sum of the tree aggregation protocol; fixed clipping only.

Pure functions of their inputs and the passed-in generator or tree noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .adaptive import next_clip_norm
from .config import PrivacyConfig
from .ftrl import TreeNoise
from .noise import noisy_count, noisy_mean

__all__ = ["Release", "ftrl_release", "release"]


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


def ftrl_release(
    config: PrivacyConfig,
    total: np.ndarray,
    clip_norm: float,
    noise: TreeNoise,
    tree: int,
    step: int,
) -> Release:
    """DP-FTRL's release of the round at ``step`` of tree ``tree``: ``(total +
    noise.step_noise(tree, step)) / n`` as float32, with ``total`` the sum of updates clipped to
    ``clip_norm`` (weight 1 each) and n the fixed expected reports.

    Summed over a tree's steps 1..t, the releases times n are the tree protocol's noisy prefix
    sum of the totals. ``noise_std`` is the std of each tree node (z C), not of this round's
    increment. Raises ValueError unless the task is DP-FTRL, ``noise`` was built with std
    ``z * clip_norm`` and its length is the total's."""
    if not config.ftrl:
        raise ValueError('ftrl_release needs mechanism = "dp_ftrl"')
    std = config.noise_multiplier * clip_norm
    if not math.isclose(noise.std, std, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(
            f"tree noise std {noise.std:g} is not z x clip_norm = {std:g}: the accountant "
            "charges for the latter"
        )
    if total.size != noise.d:
        raise ValueError(f"total has {total.size} values, tree noise {noise.d}")
    noised = total.astype(np.float64) + noise.step_noise(tree, step).reshape(total.shape)
    mean: np.ndarray = (noised / float(config.expected_reports)).astype(np.float32)
    return Release(mean, clip_norm, clip_norm, std, None)
