"""What a task's ``objective`` means to a worker: the pipeline from its visits to examples.

Kept apart from ``datasets`` (which also generates synthetic histories) so that the browser
imports only what turns real signals into examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .features import FeatureConfig, VisitRecord, extract_examples
from .models import Example

__all__ = ["OBJECTIVES", "Pipeline"]

Pipeline = Callable[[Sequence[VisitRecord], dict[str, Any], float], list[Example]]


def _revisit(visits: Sequence[VisitRecord], features: dict[str, Any], now: float) -> list[Example]:
    return extract_examples(visits, FeatureConfig.from_dict(features), now)


#: objective name -> pipeline. "revisit_7d": will this host be visited again within
#: ``horizon_days`` (7 by default) of this visit?
OBJECTIVES: dict[str, Pipeline] = {"revisit_7d": _revisit}
