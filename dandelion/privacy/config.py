"""A task's differential-privacy configuration: the ``[privacy]`` table of a task file.

User-level DP-FedAvg with one of two mechanisms:

- ``poisson`` (the default): every round releases the sum of the clipped updates plus Gaussian
  noise, divided by a fixed denominator; the guarantee is stated for a sampling probability
  ``q = expected reports / population``, and the coordinator enforces it: each worker's
  participation in a round is decided once, by its own coin of probability q.
- ``dp_ftrl``: tree aggregation of the rounds' sums (Kairouz et al. 2021), with a tree of
  ``min_separation`` rounds and a minimum separation of as many rounds between one worker's
  participations, enforced by the coordinator; no assumption about how workers are sampled.

See ``docs/privacy.md``.

Defaults that depend on the round plan (``delta``, ``bit_noise_std``) are resolved when the
table is read, so a stored task shows the values actually used.

Raises :class:`PrivacyConfigError` naming the offending key (without the ``privacy.`` prefix,
which the task-file reader adds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..taskspec.tables import unknown_key

__all__ = [
    "ACCOUNTANTS",
    "CLIPPING",
    "MECHANISMS",
    "PrivacyConfig",
    "PrivacyConfigError",
    "default_delta",
    "privacy_config",
]

ACCOUNTANTS = ("pld", "rdp")
CLIPPING = ("fixed", "adaptive")
MECHANISMS = ("poisson", "dp_ftrl")
Accountant = Literal["pld", "rdp"]
Clipping = Literal["fixed", "adaptive"]
Mechanism = Literal["poisson", "dp_ftrl"]

_KEYS = frozenset(
    {
        "population",
        "noise_multiplier",
        "epsilon",
        "delta",
        "clipping",
        "target_quantile",
        "clip_learning_rate",
        "bit_noise_std",
        "accountant",
        "mechanism",
        "min_separation",
    }
)


class PrivacyConfigError(ValueError):
    """A privacy configuration that gives no meaningful guarantee or cannot run."""


def default_delta(population: int) -> float:
    """``1 / population^1.1``: below one in a population, so no user's data may simply leak."""
    return float(population**-1.1)


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """DP-FedAvg settings of one task.

    ``expected_reports`` is the round plan's goal: the fixed denominator of every round's mean,
    and the cohort size in ``q``. ``noise_multiplier`` is z, the one the accountant charges: the
    noise on the update sum has std ``update_noise_multiplier * clip`` (z itself with fixed
    clipping; a little more with adaptive clipping, which spends part of the budget on the
    clip-bit count).
    """

    population: int
    noise_multiplier: float
    epsilon: float
    delta: float
    expected_reports: int
    clipping: Clipping = "fixed"
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    bit_noise_std: float = 0.0
    accountant: Accountant = "pld"
    mechanism: Mechanism = "poisson"
    min_separation: int = 0  # dp_ftrl: rounds between one worker's participations (tree size)

    @property
    def sampling_rate(self) -> float:
        """q: the chance that a given eligible user reports in a given round (assumed)."""
        return self.expected_reports / self.population

    @property
    def poisson(self) -> bool:
        """Each worker takes part in a round by its own coin of probability q (enforced)."""
        return self.mechanism == "poisson"

    @property
    def ftrl(self) -> bool:
        """DP-FTRL: tree-aggregated noise over rounds, one participation per tree enforced."""
        return self.mechanism == "dp_ftrl"

    @property
    def adaptive(self) -> bool:
        return self.clipping == "adaptive"

    @property
    def update_noise_multiplier(self) -> float:
        """z_Δ, the update-noise multiplier: z with fixed clipping; with adaptive clipping
        ``z_Δ^-2 = z^-2 - (2 sigma_b)^-2`` (Andrew et al. 2021, Theorem 1), so that update sum and
        bit count together cost what one Gaussian query of multiplier z costs."""
        z = self.noise_multiplier
        if not self.adaptive:
            return z
        return float((z**-2 - (2.0 * self.bit_noise_std) ** -2) ** -0.5)

    def to_dict(self) -> dict[str, Any]:
        """The ``[privacy]`` table, every default resolved (``expected_reports`` comes from
        ``[rounds] goal`` and is not part of it)."""
        out: dict[str, Any] = {
            "population": self.population,
            "noise_multiplier": self.noise_multiplier,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "clipping": self.clipping,
            "accountant": self.accountant,
            "mechanism": self.mechanism,
        }
        if self.ftrl:
            out["min_separation"] = self.min_separation
        if self.adaptive:
            out["target_quantile"] = self.target_quantile
            out["clip_learning_rate"] = self.clip_learning_rate
            out["bit_noise_std"] = self.bit_noise_std
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, expected_reports: int) -> PrivacyConfig:
        """Check a ``[privacy]`` table. Raises PrivacyConfigError."""
        problem = unknown_key("", raw, _KEYS)
        if problem is not None:
            raise PrivacyConfigError(problem)
        if type(expected_reports) is not int or expected_reports < 1:
            raise PrivacyConfigError("expected_reports: the round goal, an integer >= 1")
        population = raw.get("population")
        if population is None:
            raise PrivacyConfigError(
                "population: required (the number of eligible users; q = rounds.goal / it)"
            )
        if type(population) is not int or population < expected_reports:
            raise PrivacyConfigError(
                f"population: an integer >= rounds.goal ({expected_reports}); q = goal / "
                "population must not exceed 1"
            )
        z = _number(raw, "noise_multiplier", None)
        if z <= 0:
            raise PrivacyConfigError("noise_multiplier: a number > 0 (z: noise std = z x clip)")
        epsilon = _number(raw, "epsilon", None)
        if epsilon <= 0:
            raise PrivacyConfigError("epsilon: a budget > 0")
        delta = _number(raw, "delta", default_delta(population))
        if not 0 < delta < 1 / population:
            raise PrivacyConfigError(
                f"delta: a number in (0, 1/population = {1 / population:.3g}); the default is "
                f"1/population^1.1 = {default_delta(population):.3g}"
            )
        clipping = raw.get("clipping", "fixed")
        if clipping not in CLIPPING:
            raise PrivacyConfigError(f"clipping: one of {list(CLIPPING)}")
        accountant = raw.get("accountant", "pld")
        if accountant not in ACCOUNTANTS:
            raise PrivacyConfigError(f"accountant: one of {list(ACCOUNTANTS)}")
        adaptive_keys = {"target_quantile", "clip_learning_rate", "bit_noise_std"} & set(raw)
        if clipping == "fixed" and adaptive_keys:
            raise PrivacyConfigError(f'{sorted(adaptive_keys)[0]}: only with clipping = "adaptive"')
        gamma = _number(raw, "target_quantile", 0.5)
        if not 0 < gamma < 1:
            raise PrivacyConfigError("target_quantile: a number in (0, 1)")
        eta = _number(raw, "clip_learning_rate", 0.2)
        if eta <= 0:
            raise PrivacyConfigError("clip_learning_rate: a number > 0")
        sigma_b = _number(raw, "bit_noise_std", expected_reports / 20)
        if clipping == "adaptive":
            if sigma_b <= 0:
                raise PrivacyConfigError("bit_noise_std: a number > 0")
            if 2 * sigma_b <= z:
                raise PrivacyConfigError(
                    f"bit_noise_std: must exceed noise_multiplier / 2 = {z / 2:g} for adaptive "
                    f"clipping (z_update^-2 = z^-2 - (2 bit_noise_std)^-2 must be positive); "
                    f"raise rounds.goal, bit_noise_std, or lower noise_multiplier"
                )
        else:
            gamma, eta, sigma_b = 0.5, 0.2, 0.0
        mechanism = raw.get("mechanism", "poisson")
        if mechanism not in MECHANISMS:
            raise PrivacyConfigError(f"mechanism: one of {list(MECHANISMS)}")
        separation = raw.get("min_separation", 0)
        if mechanism == "dp_ftrl":
            if type(separation) is not int or not 1 <= separation <= 10_000:
                raise PrivacyConfigError(
                    'min_separation: required with mechanism = "dp_ftrl": rounds between one '
                    "worker's participations (and the tree's length), an integer in [1, 10000]"
                )
            if clipping != "fixed":
                raise PrivacyConfigError('clipping: mechanism = "dp_ftrl" needs "fixed"')
            if "accountant" in raw and accountant != "rdp":
                raise PrivacyConfigError(
                    'accountant: mechanism = "dp_ftrl" is accounted by dp-accounting\'s RDP '
                    'accountant (tree aggregation events): "rdp"'
                )
            accountant = "rdp"
        elif "min_separation" in raw:
            raise PrivacyConfigError('min_separation: only with mechanism = "dp_ftrl"')
        return cls(
            population=population,
            noise_multiplier=z,
            epsilon=epsilon,
            delta=delta,
            expected_reports=expected_reports,
            clipping=clipping,
            target_quantile=gamma,
            clip_learning_rate=eta,
            bit_noise_std=sigma_b,
            accountant=accountant,
            mechanism=mechanism,
            min_separation=separation if mechanism == "dp_ftrl" else 0,
        )


def privacy_config(task: dict[str, Any]) -> PrivacyConfig | None:
    """The privacy configuration of a stored task's ``config`` table (None without
    ``[privacy]``). Raises PrivacyConfigError for a table that no longer checks (the coordinator
    would refuse to load that task too)."""
    privacy = task.get("privacy")
    if not privacy:
        return None
    return PrivacyConfig.from_dict(privacy, expected_reports=task["rounds"]["goal"])


def _number(raw: dict[str, Any], key: str, default: float | None) -> float:
    if key not in raw:
        if default is None:
            raise PrivacyConfigError(f"{key}: required")
        return default
    value = raw[key]
    if type(value) not in (int, float) or not math.isfinite(value):
        raise PrivacyConfigError(f"{key}: a finite number")
    return float(value)
