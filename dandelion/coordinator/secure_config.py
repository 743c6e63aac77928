"""A task's ``[secure_aggregation]`` table: SecAgg+ parameters (docs/secure_aggregation.md).

Rules of this file: what the table says and whether the protocol can run with it, nothing of
how a round is run. A round's participant count is known only when it opens, so the table
keeps what was set (``None``: the protocol's default at that n) and
:meth:`SecureAggregationPlan.params` makes the round's
:class:`~dandelion.protocol.secagg.params.SecAggParams`. The file is checked at the largest
round the plan can assign (``ceil(goal * over_selection)``) and at the smallest it may sum
(``min_survivors``).

The coordinator runs a task with the table as secure rounds (``secure_round.py``,
``secure_conductor.py``); ``dandelion task check`` validates the table.

Raises :class:`~dandelion.coordinator.taskconfig.TaskConfigError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..protocol.secagg import SecAggConfigError, SecAggParams, Timeouts

__all__ = [
    "SECURE_KEYS",
    "SecureAggregationPlan",
    "parse_secure_aggregation",
]

#: The table's keys, in the order docs/tasks.md lists them.
SECURE_KEYS = (
    "degree",
    "threshold",
    "scale_bits",
    "min_survivors",
    "advertise_timeout_s",
    "share_timeout_s",
    "masked_timeout_s",
    "unmask_timeout_s",
)


@dataclass(frozen=True, slots=True)
class SecureAggregationPlan:
    """What ``[secure_aggregation]`` sets; ``None`` is the protocol's default at the round's n."""

    degree: int | None = None
    threshold: int | None = None
    scale_bits: int | None = None
    min_survivors: int | None = None
    advertise_timeout_s: float = 30.0
    share_timeout_s: float = 30.0
    masked_timeout_s: float = 120.0
    unmask_timeout_s: float = 30.0

    def params(self, n: int, dimension: int, clip_norm: float) -> SecAggParams:
        """The parameters of a round of ``n`` participants. Raises SecAggConfigError."""
        return SecAggParams.choose(
            n,
            dimension,
            clip_norm,
            degree=self.degree,
            threshold=self.threshold,
            scale_bits=self.scale_bits,
            min_survivors=self.min_survivors,
            timeouts=Timeouts(
                self.advertise_timeout_s,
                self.share_timeout_s,
                self.masked_timeout_s,
                self.unmask_timeout_s,
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


_DEFAULTS = {f.name: f.default for f in fields(SecureAggregationPlan)}


def parse_secure_aggregation(
    raw: dict[str, Any], *, largest: int, dimension: int, clip_norm: float
) -> SecureAggregationPlan:
    """The table, checked at a round of ``largest`` participants. Raises ValueError with the
    field (the caller turns it into a TaskConfigError)."""
    for key in raw:
        if key not in SECURE_KEYS:
            raise ValueError(f"secure_aggregation.{key}: unknown key; one of {list(SECURE_KEYS)}")
    ints: dict[str, int | None] = {}
    for key in ("degree", "threshold", "scale_bits", "min_survivors"):
        value = raw.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"secure_aggregation.{key}: a non-negative integer")
        ints[key] = value
    times: dict[str, float] = {}
    for key in SECURE_KEYS[4:]:
        value = raw.get(key, _DEFAULTS[key])
        if type(value) not in (int, float) or not math.isfinite(value) or not 0 < value <= 86400:
            raise ValueError(f"secure_aggregation.{key}: a number of seconds in (0, 86400]")
        times[key] = float(value)
    plan = SecureAggregationPlan(**ints, **times)  # type: ignore[arg-type]
    if largest < 2:
        raise ValueError("secure_aggregation: needs rounds of at least 2 participants")
    try:
        params = plan.params(largest, dimension, clip_norm)
        # The round may open with fewer participants than it assigns: the parameters must hold
        # at every n down to the survivors it needs (with a fixed degree, down to degree + 1).
        smallest = max(2, params.min_survivors, (plan.degree or 0) + 1)
        plan.params(smallest, dimension, clip_norm)
    except SecAggConfigError as exc:
        raise ValueError(f"secure_aggregation: {exc}") from None
    return plan
