"""User-level differential privacy for federated rounds: DP-FedAvg with a fixed denominator,
adaptive clipping, accounting with dp-accounting, and the budget rule. numpy and dp-accounting
only (the latter imported lazily); no I/O. See ``docs/privacy.md``."""

from __future__ import annotations

from .accountant import (
    DEFAULT_PLD_DISCRETIZATION,
    RoundEvent,
    compose,
    epsilon,
    epsilon_after,
    rdp_curve,
    rdp_epsilon_classic,
)
from .adaptive import BIT_TOLERANCE, next_clip_norm, observed_bit
from .config import (
    ACCOUNTANTS,
    CLIPPING,
    MECHANISMS,
    PrivacyConfig,
    PrivacyConfigError,
    default_delta,
)
from .ledger import BudgetCheck, PrivacyLedger
from .mechanism import Release, release
from .noise import gaussian_noise, noisy_count, noisy_mean, secure_generator

__all__ = [
    "ACCOUNTANTS",
    "BIT_TOLERANCE",
    "CLIPPING",
    "DEFAULT_PLD_DISCRETIZATION",
    "MECHANISMS",
    "BudgetCheck",
    "PrivacyConfig",
    "PrivacyConfigError",
    "PrivacyLedger",
    "Release",
    "RoundEvent",
    "compose",
    "default_delta",
    "epsilon",
    "epsilon_after",
    "gaussian_noise",
    "next_clip_norm",
    "noisy_count",
    "noisy_mean",
    "observed_bit",
    "rdp_curve",
    "rdp_epsilon_classic",
    "release",
    "secure_generator",
]
