"""FedAvgM (Hsu et al. 2019): FedAvg with server momentum, v <- beta v + delta; x <- x + lr v."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ServerOptimizer

__all__ = ["FedAvgM"]


class FedAvgM(ServerOptimizer):
    name: ClassVar[str] = "fedavgm"

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        if server_lr <= 0 or not 0 <= momentum < 1:
            raise ValueError("need server_lr > 0 and 0 <= momentum < 1")
        self.server_lr = server_lr
        self.momentum = momentum
        self._velocity: np.ndarray | None = None

    def step(self, params: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        if self._velocity is None:
            self._velocity = np.zeros_like(mean_delta, dtype=np.float32)
        self._velocity = (np.float32(self.momentum) * self._velocity + mean_delta).astype(
            np.float32
        )
        return (params + np.float32(self.server_lr) * self._velocity).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {} if self._velocity is None else {"velocity": self._velocity.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        unknown = set(state) - {"velocity"}
        if unknown:
            raise ValueError(f"fedavgm state has unknown keys {sorted(unknown)}")
        velocity = state.get("velocity")
        self._velocity = None if velocity is None else velocity.astype(np.float32).copy()
