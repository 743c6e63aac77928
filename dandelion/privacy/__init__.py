"""User-level differential privacy for federated rounds: DP-FedAvg with a fixed denominator,
adaptive clipping, DP-FTRL's tree aggregation, accounting with dp-accounting, and the budget
rule. numpy and dp-accounting only (the latter imported lazily); no I/O. See
``docs/privacy.md``."""

from __future__ import annotations

from .accountant import (
    DEFAULT_PLD_DISCRETIZATION,
    RoundEvent,
    compose,
    epsilon,
    epsilon_after,
    ftrl_epsilon,
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
from .evaluation import EvalRelease, evaluation_event, release_sums
from .ftrl import TreeNoise, position
from .ledger import BudgetCheck, PrivacyLedger
from .mechanism import Release, ftrl_release, release
from .noise import gaussian_noise, noisy_count, noisy_mean, secure_generator

__all__ = [
    "ACCOUNTANTS",
    "BIT_TOLERANCE",
    "CLIPPING",
    "DEFAULT_PLD_DISCRETIZATION",
    "MECHANISMS",
    "BudgetCheck",
    "EvalRelease",
    "PrivacyConfig",
    "PrivacyConfigError",
    "PrivacyLedger",
    "Release",
    "RoundEvent",
    "TreeNoise",
    "compose",
    "default_delta",
    "epsilon",
    "epsilon_after",
    "evaluation_event",
    "ftrl_epsilon",
    "ftrl_release",
    "gaussian_noise",
    "next_clip_norm",
    "noisy_count",
    "noisy_mean",
    "observed_bit",
    "position",
    "rdp_curve",
    "rdp_epsilon_classic",
    "release",
    "release_sums",
    "secure_generator",
]
