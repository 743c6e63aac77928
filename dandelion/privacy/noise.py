"""Gaussian noise for DP-FedAvg, from a generator seeded by the operating system.

Rules of this file: randomness is always a passed-in ``numpy.random.Generator``; the one made
here is :func:`secure_generator`, which seeds numpy's PCG64 with 128 bits from ``secrets`` (the
OS's CSPRNG) and is called once per DP-FedAvg round. The only other generators of the package
are DP-FTRL's tree nodes (``ftrl.TreeNoise``), seeded from an HMAC of the task's secret key so
that a restarted coordinator recomputes the same node noise. Nothing touches the global
``np.random`` state, whose seed anyone in the process can set or read.

Raises ValueError for a negative noise scale or a non-positive denominator.
"""

from __future__ import annotations

import secrets

import numpy as np

__all__ = ["gaussian_noise", "noisy_count", "noisy_mean", "secure_generator"]


def secure_generator() -> np.random.Generator:
    """A fresh generator for one round's noise, seeded with 128 bits from the OS."""
    return np.random.default_rng(secrets.randbits(128))


def gaussian_noise(d: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """``d`` independent N(0, std²) values, float64 (the sum is widened before noising)."""
    if std < 0 or not np.isfinite(std):
        raise ValueError(f"noise std must be a non-negative number, got {std}")
    noise: np.ndarray = rng.normal(0.0, std, size=d) if std > 0 else np.zeros(d)
    return noise


def noisy_mean(
    total: np.ndarray, noise_std: float, denominator: float, rng: np.random.Generator
) -> np.ndarray:
    """``(total + N(0, noise_std² I)) / denominator`` as float32.

    ``denominator`` is fixed in advance (the expected number of reports), never the number that
    arrived: dividing by the realized count would make the output's scale depend on whether
    one user took part. The noise is drawn and added in float64, so the float32 sum's rounding
    does not narrow it.
    """
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    noised: np.ndarray = total.astype(np.float64) + gaussian_noise(total.size, noise_std, rng)
    mean: np.ndarray = (noised / denominator).astype(np.float32)
    return mean


def noisy_count(count: float, std: float, rng: np.random.Generator) -> float:
    """``count + N(0, std²)``: the clip-bit sum of adaptive clipping."""
    return float(count + gaussian_noise(1, std, rng)[0])
