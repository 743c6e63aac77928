"""DP-FTRL's noise: online binary tree aggregation of the rounds' sums, with restarts
(Kairouz et al. 2021, "Practical and Private (Deep) Learning without Sampling or Shuffling").

A task's released rounds are cut into trees of ``tree_size`` consecutive rounds
(:func:`position`). Within a tree, the coordinator publishes noisy *prefix sums* of the rounds'
clipped sums: after step t the model is ``model at the tree's start + server_lr x (noisy prefix
sum of steps 1..t) / n``. The noise of a prefix is that of the binary tree protocol: every dyadic
node (level l, position p) covers steps ``[p 2^l + 1, (p + 1) 2^l]`` and carries one Gaussian
vector N(0, std² I); the prefix [1, t] is the union of the nodes given by the bits of t, so its
noise is the sum of popcount(t) node vectors (variance popcount(t) std²), and a node is reused by
every prefix that contains it. One update at step s touches at most one node per level, which is
what dp-accounting's ``SingleEpochTreeAggregationDpEvent`` charges for. A new tree starts from
zero noise.

Rules of this file:

- numpy and the standard library's ``hmac`` only; no I/O, no clock, no global ``np.random``.
- Node noise is a deterministic function of ``(secret, tree, level, position)``: the node's
  generator is ``np.random.Generator(np.random.PCG64(seed))`` with the 128-bit ``seed`` taken
  from HMAC-SHA256(secret, "tree:level:position"). A coordinator that restarts recomputes the
  same noise from the secret instead of storing noise vectors. This is the one place outside
  ``noise.secure_generator`` where a generator is made, and it is seeded from a key, not a
  clock or counter.
- **The secret is as sensitive as the coordinator's memory**: whoever holds it can recompute
  every node's noise and subtract it from the published models, which leaves the exact sums of
  the clipped updates. Make it with ``secrets.token_bytes(32)``, one per task, keep it where the
  coordinator keeps nothing it publishes, never log it (``repr`` hides it), never reuse it for
  another task.
- Pure functions of their inputs; float64 throughout.

Raises ValueError for arguments outside their domain.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from .noise import gaussian_noise

__all__ = ["TreeNoise", "position"]

#: A shorter key would make the noise guessable (128 bits, as ``secure_generator`` draws).
_MIN_SECRET_BYTES = 16


def position(released_index: int, tree_size: int) -> tuple[int, int]:
    """``(tree, step)`` of a task's ``released_index``-th released round (1-indexed): tree
    ``(k - 1) // tree_size`` (0-indexed), step ``(k - 1) % tree_size + 1`` (1-indexed)."""
    _check_int("released_index", released_index, 1)
    _check_int("tree_size", tree_size, 1)
    return (released_index - 1) // tree_size, (released_index - 1) % tree_size + 1


class TreeNoise:
    """The noise of tree aggregation for one task: node vectors of length ``d`` and std ``std``,
    derived from ``secret``."""

    __slots__ = ("_secret", "d", "std")

    def __init__(self, secret: bytes, d: int, std: float) -> None:
        if not isinstance(secret, bytes) or len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {_MIN_SECRET_BYTES} bytes")
        _check_int("d", d, 1)
        if not (isinstance(std, int | float) and np.isfinite(std) and std >= 0):
            raise ValueError(f"noise std must be a non-negative number, got {std}")
        self._secret = secret
        self.d = d
        self.std = float(std)

    def __repr__(self) -> str:
        # Never the secret: it would unmask every published model.
        return f"TreeNoise(d={self.d}, std={self.std:g})"

    def _node(self, tree: int, level: int, pos: int) -> np.ndarray:
        """The noise vector of dyadic node ``(level, pos)`` of tree ``tree``: it covers steps
        ``[pos 2^level + 1, (pos + 1) 2^level]``."""
        _check_int("tree", tree, 0)
        _check_int("level", level, 0)
        _check_int("pos", pos, 0)
        label = f"{tree}:{level}:{pos}".encode("ascii")
        digest = hmac.new(self._secret, label, hashlib.sha256).digest()
        seed = int.from_bytes(digest[:16], "big")
        return gaussian_noise(self.d, self.std, np.random.Generator(np.random.PCG64(seed)))

    def prefix_noise(self, tree: int, step: int) -> np.ndarray:
        """The noise on tree ``tree``'s noisy prefix sum of steps 1..``step`` (zeros for step
        0): the sum of the nodes of the binary decomposition of [1, step], widest first."""
        _check_int("tree", tree, 0)
        _check_int("step", step, 0)
        total = np.zeros(self.d)
        for level in reversed(range(step.bit_length())):
            if step >> level & 1:
                total += self._node(tree, level, (step >> level) - 1)
        return total

    def step_noise(self, tree: int, step: int) -> np.ndarray:
        """``prefix_noise(tree, step) - prefix_noise(tree, step - 1)``: what the round at
        ``step`` adds to its clipped sum so that the models are the noisy prefix sums.

        Computed from the nodes that differ (the nodes above the lowest set bit of ``step`` are
        shared by both prefixes and cancel), so it is exact up to one rounding per node."""
        _check_int("step", step, 1)
        low = (step & -step).bit_length() - 1  # the lowest set bit of step
        noise = self._node(tree, low, (step >> low) - 1)
        prev = step - 1  # bits below `low` are all set in prev: one node each
        for level in range(low):
            noise -= self._node(tree, level, (prev >> level) - 1)
        return noise


def _check_int(name: str, value: int, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
