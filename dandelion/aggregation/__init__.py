"""Aggregation maths: the streaming clipped sum, the round aggregate with its byte form, and the
server optimizers; an evaluation round's bounded metric sums; a secure round's masked sum.
numpy and scipy only (and the secure-aggregation protocol's interfaces)."""

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
from .secure import SecureAggregate

__all__ = [
    "AddResult",
    "Aggregate",
    "Aggregator",
    "Contribution",
    "EvalBounds",
    "EvalSums",
    "SecureAggregate",
    "StreamingSum",
    "UpdateRejected",
    "Weighting",
    "clip_factor",
    "decode_update",
    "l2_norm",
    "single_threaded_blas",
    "update_weight",
]
