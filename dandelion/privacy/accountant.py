"""Privacy accounting with Google's ``dp-accounting`` library: nothing hand-composed here.

A DP-FedAvg round is a Poisson-sampled Gaussian mechanism: each user takes part with
probability q, and the released sum of clipped updates carries Gaussian noise of z times the
clip norm. ``T`` such rounds are ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` composed T
times; the PLD accountant (privacy loss distributions, tight) turns that into ε at a given δ,
the RDP accountant (Rényi DP, looser but faster) is available as an option.

A DP-FTRL round (``mechanism = "dp_ftrl"``, Kairouz et al. 2021) is one step of a binary tree
aggregation; the released rounds form trees of ``tree_size`` steps, the noise restarting with
each tree, and each user takes part at most once per tree. :func:`ftrl_epsilon` composes one
``SingleEpochTreeAggregationDpEvent(z, tree_size)`` per full tree (and one for the steps of a
last partial tree) in dp-accounting's RDP accountant — the only one that knows the event.

**The neighbouring relation differs.** Poisson rounds are accounted for adding or removing one
user (``ADD_OR_REMOVE_ONE``). Tree aggregation is accounted, as in the paper, for
``REPLACE_SPECIAL``: the neighbouring dataset keeps the user's participation slots but replaces
all of its data with a special record whose clipped update is zero. Because the denominator is
fixed in advance, a zero update is what the released sums would hold had the user sent nothing,
so this protects the user's data, with sensitivity C per tree node (not 2C as for replacing one
user by any other); it does not hide *that* the user took part in the rounds it was assigned
(which the participation records, unprotected either way, show anyway), nor does it cover a
user's absence changing who else was scheduled. An ε under one relation is not a figure under
the other: do not compare them as if they were.

``dp_accounting`` is imported lazily: it takes over a second to import, and only the
coordinator's budget checks and the ``dandelion privacy`` command need it.

Raises ValueError for parameters outside their domain.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PLD_DISCRETIZATION",
    "RoundEvent",
    "compose",
    "epsilon",
    "epsilon_after",
    "ftrl_epsilon",
    "rdp_curve",
    "rdp_epsilon_classic",
]

#: dp-accounting's own default for ``PLDAccountant``: the value grid of the privacy loss.
#: Its pessimistic discretization makes the ε it reports an upper bound for any grid.
DEFAULT_PLD_DISCRETIZATION = 1e-4


@dataclass(frozen=True, slots=True)
class RoundEvent:
    """``count`` rounds of sampling probability ``q`` and noise multiplier ``z``."""

    q: float
    z: float
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.q <= 1:
            raise ValueError(f"sampling probability q must be in (0, 1], got {self.q}")
        if not (self.z > 0 and math.isfinite(self.z)):
            raise ValueError(f"noise multiplier z must be a positive number, got {self.z}")
        if type(self.count) is not int or self.count < 0:
            raise ValueError(f"round count must be a non-negative integer, got {self.count}")


def compose(events: Iterable[RoundEvent]) -> tuple[RoundEvent, ...]:
    """Group equal (q, z) rounds into one event each, in first-seen order."""
    counts: Counter[tuple[float, float]] = Counter()
    for e in events:
        counts[(e.q, e.z)] += e.count
    return tuple(RoundEvent(q, z, n) for (q, z), n in counts.items() if n > 0)


def epsilon(
    events: Sequence[RoundEvent],
    delta: float,
    accountant: str = "pld",
    *,
    discretization: float = DEFAULT_PLD_DISCRETIZATION,
) -> float:
    """ε after all ``events`` at ``delta``, from dp-accounting's ``accountant`` (pld or rdp).

    0.0 when nothing was released. Cached: the coordinator asks the same question each time it
    considers opening a round.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if accountant not in ("pld", "rdp"):
        raise ValueError(f"accountant must be 'pld' or 'rdp', not {accountant!r}")
    if discretization <= 0:
        raise ValueError("discretization must be positive")
    grouped = compose(events)
    if not grouped:
        return 0.0
    return _epsilon(grouped, float(delta), accountant, float(discretization))


def epsilon_after(
    q: float, z: float, rounds: int, delta: float, accountant: str = "pld", **kw: Any
) -> float:
    """ε after ``rounds`` equal rounds: the question ``dandelion privacy epsilon`` answers."""
    return epsilon([RoundEvent(q, z, rounds)], delta, accountant, **kw)


@functools.lru_cache(maxsize=256)
def _epsilon(
    events: tuple[RoundEvent, ...], delta: float, accountant: str, discretization: float
) -> float:
    import dp_accounting
    from dp_accounting import pld, rdp

    acct: Any
    if accountant == "pld":
        acct = pld.PLDAccountant(value_discretization_interval=discretization)
    else:
        acct = rdp.RdpAccountant()
    for e in events:
        acct.compose(_event(dp_accounting, e.q, e.z), e.count)
    value = float(acct.get_epsilon(delta))
    return value if math.isfinite(value) else math.inf


def _event(dp_accounting: Any, q: float, z: float) -> Any:
    gaussian = dp_accounting.GaussianDpEvent(z)
    return gaussian if q == 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)


def rdp_curve(events: Sequence[RoundEvent]) -> tuple[list[float], list[float]]:
    """dp-accounting's RDP orders and the composed RDP of ``events`` at each of them."""
    import dp_accounting
    from dp_accounting import rdp

    acct = rdp.RdpAccountant()
    for e in compose(events):
        acct.compose(_event(dp_accounting, e.q, e.z), e.count)
    return [float(a) for a in acct.orders], [float(r) for r in acct.rdp]


def rdp_epsilon_classic(
    orders: Sequence[float], rdp_values: Sequence[float], delta: float
) -> float:
    """The original RDP-to-(ε, δ) conversion,
    ``min over orders alpha of rdp(alpha) + log(1/δ) / (alpha - 1)`` (Mironov 2017,
    Proposition 3; the moments accountant of Abadi et al. 2016 in RDP terms).

    dp-accounting's ``RdpAccountant.get_epsilon`` uses a tighter conversion (Canonne, Kamath
    and Steinke 2020); this one is what reproduces the figures published in 2016.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    best = math.inf
    for alpha, r in zip(orders, rdp_values, strict=True):
        if alpha > 1 and math.isfinite(r):
            best = min(best, r + math.log(1 / delta) / (alpha - 1))
    return best


def ftrl_epsilon(
    z: float, tree_size: int, rounds: int, delta: float, gaussians: Sequence[float] = ()
) -> float:
    """ε at ``delta`` after ``rounds`` released rounds of DP-FTRL: trees of ``tree_size`` steps,
    restarted after each, node noise multiplier ``z`` (node std / clip norm), each user at most
    once per tree; composed with one ``GaussianDpEvent`` of each multiplier in ``gaussians``
    (the task's released evaluation rounds: no sampling, so they need no amplification).
    dp-accounting's RDP accountant, ``REPLACE_SPECIAL`` relation (see the module docstring).
    0.0 for nothing released; cached like :func:`epsilon`."""
    if not (isinstance(z, int | float) and z > 0 and math.isfinite(z)):
        raise ValueError(f"noise multiplier z must be a positive number, got {z}")
    if type(tree_size) is not int or tree_size < 1:
        raise ValueError(f"tree_size must be an integer >= 1, got {tree_size!r}")
    if type(rounds) is not int or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not all(isinstance(g, int | float) and g > 0 and math.isfinite(g) for g in gaussians):
        raise ValueError(f"Gaussian noise multipliers must be positive numbers: {gaussians}")
    if rounds == 0 and not gaussians:
        return 0.0
    grouped = tuple(sorted(Counter(float(g) for g in gaussians).items()))
    return _ftrl_epsilon(float(z), tree_size, rounds, float(delta), grouped)


@functools.lru_cache(maxsize=256)
def _ftrl_epsilon(
    z: float, tree_size: int, rounds: int, delta: float, gaussians: tuple[tuple[float, int], ...]
) -> float:
    import dp_accounting
    from dp_accounting import rdp

    full, last = divmod(rounds, tree_size)
    trees: list[Any] = []
    if full:
        tree = dp_accounting.SingleEpochTreeAggregationDpEvent(z, tree_size)
        trees.append(dp_accounting.SelfComposedDpEvent(tree, full))
    if last:
        trees.append(dp_accounting.SingleEpochTreeAggregationDpEvent(z, last))
    for g, count in gaussians:
        trees.append(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(g), count))
    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    acct.compose(dp_accounting.ComposedDpEvent(trees))
    value = float(acct.get_epsilon(delta))
    return value if math.isfinite(value) else math.inf
