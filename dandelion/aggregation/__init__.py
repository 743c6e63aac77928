"""Aggregation maths: the streaming clipped sum, the round aggregate with its byte form, and the
server optimizers; an evaluation round's bounded metric sums. numpy and scipy only."""

from __future__ import annotations

from .aggregate import Aggregate, Aggregator, Contribution
from .errors import UpdateRejected
from .evaluation import EvalBounds, EvalSums
from .kernel import (
    AddResult,
    StreamingSum,
    Weighting,
    clip_factor,
    decode_update,
    l2_norm,
    single_threaded_blas,
    update_weight,
)

__all__ = [
    "AddResult",
    "Aggregate",
    "Aggregator",
    "Contribution",
    "EvalBounds",
    "EvalSums",
    "StreamingSum",
    "UpdateRejected",
    "Weighting",
    "clip_factor",
    "decode_update",
    "l2_norm",
    "single_threaded_blas",
    "update_weight",
]
