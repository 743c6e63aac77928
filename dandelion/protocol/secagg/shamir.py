"""Shamir secret sharing of 32-byte secrets over GF(p), p = 2^521 - 1.

One field element holds a whole secret, so a secret is one polynomial and a share is one
66-byte big-endian value. Shares are indexed by the participant's round index (x = 1 … n).

Raises :class:`~dandelion.protocol.secagg.errors.SecAggConfigError` for an impossible split
(threshold out of range, an x repeated or not positive) and
:class:`~dandelion.protocol.secagg.errors.ReconstructionError` when shares do not rebuild one
secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .errors import ReconstructionError, SecAggConfigError

__all__ = ["PRIME", "SECRET_BYTES", "SHARE_BYTES", "random_coefficient", "reconstruct", "split"]

#: The Mersenne prime 2^521 - 1.
PRIME = (1 << 521) - 1
SECRET_BYTES = 32
SHARE_BYTES = 66
_TOP_MASK = (1 << 521) - 1


def random_coefficient(random_bytes: Callable[[int], bytes]) -> int:
    """A uniform element of GF(p): 66 random bytes with the top 7 bits cleared, drawn again in
    the one case (the value p itself) that is not below p."""
    while True:
        value = int.from_bytes(random_bytes(SHARE_BYTES), "big") & _TOP_MASK
        if value < PRIME:
            return value


def _evaluate(coefficients: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coefficients):  # Horner
        acc = (acc * x + c) % PRIME
    return acc


def split(
    secret: bytes, threshold: int, xs: Iterable[int], random_bytes: Callable[[int], bytes]
) -> dict[int, bytes]:
    """Share ``secret`` so that any ``threshold`` of the returned shares (one per x) rebuild it."""
    points = list(xs)
    if len(secret) != SECRET_BYTES:
        raise SecAggConfigError(f"a secret is {SECRET_BYTES} bytes, not {len(secret)}")
    if len(set(points)) != len(points) or any(x <= 0 or x >= PRIME for x in points):
        raise SecAggConfigError("share points must be distinct positive integers")
    if not 1 <= threshold <= len(points):
        raise SecAggConfigError(f"threshold {threshold} must be between 1 and {len(points)}")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [random_coefficient(random_bytes) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x).to_bytes(SHARE_BYTES, "big") for x in points}


class _Interpolation:
    """Evaluates the polynomial through ``points`` at any x in O(t) multiplications: the
    Lagrange denominators do not depend on x, so they are inverted once (one modular
    inversion for all of them, by Montgomery's trick)."""

    def __init__(self, points: list[tuple[int, int]]) -> None:
        self.xs = [x for x, _ in points]
        self.ys = [y for _, y in points]
        dens = []
        for i, xi in enumerate(self.xs):
            den = 1
            for j, xj in enumerate(self.xs):
                if i != j:
                    den = den * (xi - xj) % PRIME
            dens.append(den)
        # Batch inversion: prefix products, one pow, then walk back.
        prefix = [1]
        for den in dens:
            prefix.append(prefix[-1] * den % PRIME)
        inv = pow(prefix[-1], -1, PRIME)
        self.inv_dens = [0] * len(dens)
        for i in range(len(dens) - 1, -1, -1):
            self.inv_dens[i] = inv * prefix[i] % PRIME
            inv = inv * dens[i] % PRIME

    def at(self, x: int) -> int:
        diffs = [(x - xj) % PRIME for xj in self.xs]
        if 0 in diffs:
            return self.ys[diffs.index(0)]
        n = len(diffs)
        suffix = [1] * (n + 1)
        for i in range(n - 1, -1, -1):
            suffix[i] = suffix[i + 1] * diffs[i] % PRIME
        total, prefix = 0, 1
        for i in range(n):
            total += self.ys[i] * self.inv_dens[i] % PRIME * (prefix * suffix[i + 1] % PRIME)
            prefix = prefix * diffs[i] % PRIME
        return total % PRIME


def reconstruct(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """Rebuild the secret from at least ``threshold`` shares ``{x: share}``.

    The first ``threshold`` shares (by x) define the polynomial; every further share must lie
    on it. Raises ReconstructionError with fewer shares, a malformed share, disagreeing shares,
    or a result that is not a 32-byte secret.
    """
    if len(shares) < threshold:
        raise ReconstructionError(f"{len(shares)} shares, {threshold} needed")
    points: list[tuple[int, int]] = []
    for x in sorted(shares):
        share = shares[x]
        value = int.from_bytes(share, "big")
        if len(share) != SHARE_BYTES or value >= PRIME or x <= 0:
            raise ReconstructionError(f"share at x = {x} is not an element of the field")
        points.append((x, value))
    base, extra = _Interpolation(points[:threshold]), points[threshold:]
    for x, value in extra:
        if base.at(x) != value:
            raise ReconstructionError(f"share at x = {x} disagrees with the others")
    secret = base.at(0)
    if secret >> (8 * SECRET_BYTES):
        raise ReconstructionError("shares rebuild a value that is not a 32-byte secret")
    return secret.to_bytes(SECRET_BYTES, "big")
