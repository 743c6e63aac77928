"""The round context and the neighbourhood graph, both derived from the setup alone.

The graph is a Harary graph H(k, n) (each participant joined to the k/2 nearest on each side of
a ring) over a permutation drawn from the round's salt, so every participant has exactly k
neighbours and everyone computes the same graph (docs/secure_aggregation.md, Neighbourhood
graph). Standard library only.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterator

from .errors import SecAggConfigError

__all__ = [
    "CONTEXT_LABEL",
    "default_degree",
    "default_threshold",
    "neighbourhoods",
    "permutation",
    "round_salt",
    "uniform_below",
]

CONTEXT_LABEL = b"dandelion-secagg-v1"
SEED_BYTES = 32


def round_salt(task: str, round_number: int, seed: bytes) -> bytes:
    """The HKDF salt that binds every key of a round to its task, number and seed."""
    if len(seed) != SEED_BYTES:
        raise SecAggConfigError(f"a round seed is {SEED_BYTES} bytes, not {len(seed)}")
    name = task.encode("utf-8")
    return hashlib.sha256(
        CONTEXT_LABEL + struct.pack(">H", len(name)) + name + struct.pack(">Q", round_number) + seed
    ).digest()


def _stream(salt: bytes) -> Iterator[int]:
    counter = 0
    while True:
        block = hashlib.sha256(salt + b"graph" + struct.pack(">Q", counter)).digest()
        yield from struct.unpack(">4Q", block)
        counter += 1


def uniform_below(stream: Iterator[int], m: int) -> int:
    """A uniform integer in [0, m) from 64-bit draws, by rejection (no modulo bias)."""
    limit = (1 << 64) - ((1 << 64) % m)
    while True:
        r = next(stream)
        if r < limit:
            return r % m


def permutation(n: int, salt: bytes) -> list[int]:
    """The ring order of participants 1 … n: Fisher-Yates driven by the salt's stream."""
    order = list(range(1, n + 1))
    stream = _stream(salt)
    for i in range(n - 1, 0, -1):
        j = uniform_below(stream, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def default_degree(n: int) -> int:
    """min(n - 1, 2 * ceil(log2 n)), rounded up to even when below n - 1."""
    if n < 2:
        raise SecAggConfigError("secure aggregation needs at least 2 participants")
    k = 2 * math.ceil(math.log2(n))
    return n - 1 if k >= n - 1 else k


def default_threshold(k: int) -> int:
    """floor(k/2) + 1: more than half of a participant's neighbours."""
    return k // 2 + 1


def check_degree(n: int, k: int) -> None:
    """Raise SecAggConfigError unless k is even in [2, n - 2] or k = n - 1."""
    if n < 2:
        raise SecAggConfigError("secure aggregation needs at least 2 participants")
    if k != n - 1 and not (2 <= k <= n - 2 and k % 2 == 0):
        raise SecAggConfigError(f"degree {k} must be even in [2, {n - 2}] or {n - 1} (complete)")


def neighbourhoods(n: int, k: int, salt: bytes) -> dict[int, frozenset[int]]:
    """Each participant's k neighbours. Raises SecAggConfigError for an impossible degree."""
    check_degree(n, k)
    if k == n - 1:
        everyone = frozenset(range(1, n + 1))
        return {i: everyone - {i} for i in everyone}
    order = permutation(n, salt)
    half = k // 2
    return {
        order[p]: frozenset(order[(p + s) % n] for s in range(-half, half + 1) if s)
        for p in range(n)
    }
