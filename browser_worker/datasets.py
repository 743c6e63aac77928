"""Datasets built from browsing histories: one user's examples, or a whole synthetic population.

For the CPython demo and tests; the emulator builds its devices' data from each objective's
own synthetic generator (``Objective.synthetic``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dandelion.taskspec.models import Example, ModelSpec
from dandelion.taskspec.objectives.revisit import FeatureConfig, extract_examples, num_features
from dandelion.taskspec.synthetic import SyntheticConfig, generate_history

__all__ = ["EPOCH", "Population", "make_population", "revisit_dataset"]

#: Where synthetic histories start (2026-01-05, a Monday, 00:00 UTC): fixed for reproducibility.
EPOCH = 1_767_571_200.0
_DAY = 86400.0


def revisit_dataset(
    user_seed: int,
    *,
    days: float = 28.0,
    synthetic: SyntheticConfig | None = None,
    features: FeatureConfig | None = None,
) -> list[Example]:
    """One synthetic user's examples for the revisit task (history from EPOCH, labels as of
    the end of it)."""
    history = generate_history(user_seed, days, synthetic or SyntheticConfig(), EPOCH)
    return extract_examples(history, features or FeatureConfig(), EPOCH + days * _DAY)


@dataclass(frozen=True, slots=True)
class Population:
    train: list[list[Example]]  # one list per user: that user's local data
    test: list[Example]  # from held-out users of the same population
    spec: ModelSpec
    feature_config: FeatureConfig


def make_population(
    num_users: int,
    seed: int,
    heterogeneity: float = 0.5,
    *,
    days: float = 28.0,
    test_users: int | None = None,
    feature_config: FeatureConfig | None = None,
) -> Population:
    """``num_users`` users with their own histories, and a test set from held-out users.

    User seeds are derived from ``seed``; held-out users come from a disjoint seed range, so the
    test measures how the model does for people it never saw.
    """
    fc = feature_config or FeatureConfig()
    synthetic = SyntheticConfig(heterogeneity=heterogeneity)
    base = seed * 1_000_003
    train = [
        revisit_dataset(base + u, days=days, synthetic=synthetic, features=fc)
        for u in range(num_users)
    ]
    held_out = test_users if test_users is not None else max(10, num_users // 4)
    test = [
        ex
        for u in range(held_out)
        for ex in revisit_dataset(base + 500_000 + u, days=days, synthetic=synthetic, features=fc)
    ]
    return Population(train, test, ModelSpec("logreg", num_features(fc)), fc)
