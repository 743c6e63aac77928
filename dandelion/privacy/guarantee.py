"""The guarantee a DP task gives, in words: what ε means, stated wherever ε is shown.

An ε alone says little: the same number is a different promise for another δ, another unit of
privacy, another neighbouring relation, or under another assumption about who takes part.
:func:`guarantee` puts them together, once, for every place that shows ε — ``dandelion task
show`` (text and ``--json``), ``task list --json``, the admin API (task list, task detail,
privacy ledger) and the dashboard.

Rules of this file: it holds the wording and nothing else. Pure functions of a
:class:`~.config.PrivacyConfig` and the ε spent (the ledger's figure, computed elsewhere);
no I/O, no accounting. What is returned is strict-JSON-safe: finite numbers or None, strings.
"""

from __future__ import annotations

import math
from typing import Any

from .config import PrivacyConfig

__all__ = ["ADVERSARY", "NEIGHBOURING", "TRUSTED", "UNIT", "guarantee"]

#: The unit of privacy: what "one user" is to the coordinator.
UNIT = "one worker id (one browser profile)"

#: Neighbouring datasets, per mechanism (the relation the accountant is run for).
NEIGHBOURING = {
    "poisson": "add or remove one worker",
    "dp_ftrl": (
        "replace all of one worker's data by a zero update (its participation stays visible)"
    ),
}

#: Whom the guarantee trusts, and whom it holds against.
TRUSTED = "the coordinator and its state file are trusted (central DP)"
ADVERSARY = "other workers and whoever sees the released models"


def _assumption(config: PrivacyConfig) -> str:
    if config.ftrl:
        n = config.min_separation
        return (
            "no assumption about how workers are sampled; one worker takes part at most once "
            f"every {n} rounds (enforced by the coordinator), tree aggregation restarts every "
            f"{n} rounds; {TRUSTED}"
        )
    return (
        f"each worker takes part in a round with probability q = {config.sampling_rate:.4g}, "
        "decided by the coordinator's own coin per worker and round (enforced); "
        f"{TRUSTED}"
    )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def guarantee(config: PrivacyConfig, epsilon_spent: float) -> dict[str, Any]:
    """The (ε, δ) guarantee of a task with privacy ``config`` that has spent ``epsilon_spent``:
    ``epsilon`` (None if not finite), ``delta``, ``mechanism``, ``unit``, ``neighbouring``,
    ``assumption`` and ``accountant``, and ``statement``, all of it in one sentence."""
    epsilon = _finite(epsilon_spent)
    delta = _finite(config.delta)
    neighbouring = NEIGHBOURING[config.mechanism]
    assumption = _assumption(config)
    shown = "ε unbounded" if epsilon is None else f"ε = {epsilon:.4g}"
    statement = (
        f"{shown} at δ = {config.delta:.3g} ({config.mechanism} mechanism, "
        f"{config.accountant} accountant) for {UNIT}; neighbouring datasets: {neighbouring}. "
        f"It rests on: {assumption}. It holds against {ADVERSARY}."
    )
    return {
        "epsilon": epsilon,
        "delta": delta,
        "mechanism": config.mechanism,
        "unit": UNIT,
        "neighbouring": neighbouring,
        "assumption": assumption,
        "accountant": config.accountant,
        "statement": statement,
    }
