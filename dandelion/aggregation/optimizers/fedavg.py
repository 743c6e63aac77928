"""FedAvg (McMahan et al. 2017): move the model along the mean client delta."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ServerOptimizer

__all__ = ["FedAvg"]


class FedAvg(ServerOptimizer):
    name: ClassVar[str] = "fedavg"

    def __init__(self, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ValueError("server_lr must be positive")
        self.server_lr = server_lr

    def step(self, params: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        return (params + np.float32(self.server_lr) * mean_delta).astype(np.float32)
