"""Where the coordinator's unpredictable values come from: each round's secret (the key of its
assignment nonces and of its Poisson participation coins), each DP round's noise generator and
a DP-FTRL task's tree-noise key.

:class:`Entropy`, the default, draws them from the operating system (``secrets``): nobody can
predict who a round samples or what noise it adds. :class:`SeededEntropy` derives them from a
seed, so that an emulation on virtual time (``dandelion.emulation``) runs the same way twice;
with it a round's participants and noise are predictable by anyone who knows the seed, so it
is for emulations and tests only, never a deployment.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections import Counter

import numpy as np

from ..privacy import secure_generator

__all__ = ["Entropy", "SeededEntropy"]


class Entropy:
    """The operating system's randomness (a deployment's)."""

    def round_secret(self) -> str:
        return secrets.token_urlsafe(24)

    def noise_generator(self) -> np.random.Generator:
        return secure_generator()

    def task_key(self) -> str:
        """A DP-FTRL task's tree-noise key, 32 bytes as hex."""
        return secrets.token_hex(32)


class SeededEntropy(Entropy):
    """Values derived from ``seed``: the n-th value of each kind is a SHA-256 of (seed, kind,
    n), so one kind's draws do not shift another's. Predictable: emulations and tests only."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._drawn: Counter[str] = Counter()

    def _bytes(self, kind: str) -> bytes:
        n = self._drawn[kind]
        self._drawn[kind] += 1
        return hashlib.sha256(f"dandelion-seeded\0{self.seed}\0{kind}\0{n}".encode()).digest()

    def round_secret(self) -> str:
        return base64.urlsafe_b64encode(self._bytes("round")[:24]).decode()

    def noise_generator(self) -> np.random.Generator:
        return np.random.default_rng(int.from_bytes(self._bytes("noise")[:16], "big"))

    def task_key(self) -> str:
        return self._bytes("task_key").hex()
