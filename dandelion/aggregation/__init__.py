"""Aggregation maths: the streaming clipped sum and the server optimizers. numpy and scipy only."""

from __future__ import annotations

from .errors import UpdateRejected
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
    "StreamingSum",
    "UpdateRejected",
    "Weighting",
    "clip_factor",
    "decode_update",
    "l2_norm",
    "single_threaded_blas",
    "update_weight",
]
