"""``dandelion privacy``: what a DP plan costs, from dp-accounting, before any round runs."""

from __future__ import annotations

import math
from typing import Any

from .privacy import ACCOUNTANTS, epsilon_after, ftrl_epsilon

__all__ = ["epsilon_report", "ftrl_report"]


def epsilon_report(
    q: float, noise: float, rounds: int, delta: float, accountant: str = "pld"
) -> dict[str, Any]:
    """ε after ``rounds`` Poisson-sampled Gaussian rounds (sampling probability ``q``, noise
    multiplier ``noise``) at ``delta``, as printed by ``dandelion privacy epsilon --json``.

    Raises ValueError naming the argument that is out of range.
    """
    if not (math.isfinite(q) and 0 < q <= 1):
        raise ValueError(f"--q: a sampling probability in (0, 1], got {q}")
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"--noise: a noise multiplier > 0, got {noise}")
    if rounds < 0:
        raise ValueError(f"--rounds: a number of rounds >= 0, got {rounds}")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"--delta: a number in (0, 1), got {delta}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"--accountant: one of {list(ACCOUNTANTS)}")
    eps = epsilon_after(q, noise, rounds, delta, accountant) if rounds else 0.0
    return {
        "epsilon": eps,
        "accountant": accountant,
        "q": q,
        "noise_multiplier": noise,
        "rounds": rounds,
        "delta": delta,
    }


def ftrl_report(noise: float, tree: int, rounds: int, delta: float) -> dict[str, Any]:
    """ε after ``rounds`` DP-FTRL rounds (trees of ``tree`` rounds, node noise multiplier
    ``noise``, each worker at most once per tree) at ``delta``, as printed by ``dandelion
    privacy epsilon --mechanism dp_ftrl --json``: dp-accounting's RDP accountant, relation
    ``REPLACE_SPECIAL``, the computation the coordinator charges a DP-FTRL task with.

    Raises ValueError naming the argument that is out of range.
    """
    if not (math.isfinite(noise) and noise > 0):
        raise ValueError(f"--noise: a noise multiplier > 0, got {noise}")
    if tree < 1:
        raise ValueError(f"--tree: the tree's length (min_separation), an integer >= 1, got {tree}")
    if rounds < 0:
        raise ValueError(f"--rounds: a number of rounds >= 0, got {rounds}")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"--delta: a number in (0, 1), got {delta}")
    return {
        "epsilon": ftrl_epsilon(noise, tree, rounds, delta),
        "mechanism": "dp_ftrl",
        "accountant": "rdp",
        "tree": tree,
        "noise_multiplier": noise,
        "rounds": rounds,
        "delta": delta,
    }
