"""Server optimizers, one per module, by name."""

from __future__ import annotations

from typing import Any

from .base import ServerOptimizer, decode_state, encode_state
from .fedadam import FedAdam
from .fedavg import FedAvg
from .fedavgm import FedAvgM

__all__ = [
    "OPTIMIZERS",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "ServerOptimizer",
    "decode_state",
    "encode_state",
    "make_optimizer",
]

OPTIMIZERS: dict[str, type[ServerOptimizer]] = {cls.name: cls for cls in (FedAvg, FedAvgM, FedAdam)}


def make_optimizer(name: str, **params: Any) -> ServerOptimizer:
    """The optimizer called ``name`` with ``params``. Raises ValueError for either being wrong."""
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"{name}: {exc}") from None
