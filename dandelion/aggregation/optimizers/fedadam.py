"""FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2).

m <- b1 m + (1 - b1) delta;  v <- b2 v + (1 - b2) delta^2;  x <- x + lr m / (sqrt(v) + tau).
As in the paper, no bias correction; ``tau`` controls the adaptivity.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ServerOptimizer

__all__ = ["FedAdam"]


class FedAdam(ServerOptimizer):
    name: ClassVar[str] = "fedadam"

    def __init__(
        self, server_lr: float = 0.01, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3
    ) -> None:
        if server_lr <= 0 or tau <= 0 or not 0 <= beta1 < 1 or not 0 <= beta2 < 1:
            raise ValueError("need server_lr > 0, tau > 0 and 0 <= beta1, beta2 < 1")
        self.server_lr, self.beta1, self.beta2, self.tau = server_lr, beta1, beta2, tau
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None

    def step(self, params: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        delta = mean_delta.astype(np.float32)
        if self._m is None or self._v is None:
            self._m = np.zeros_like(delta)
            self._v = np.zeros_like(delta)
        b1, b2 = np.float32(self.beta1), np.float32(self.beta2)
        self._m = (b1 * self._m + (1 - b1) * delta).astype(np.float32)
        self._v = (b2 * self._v + (1 - b2) * delta * delta).astype(np.float32)
        step = np.float32(self.server_lr) * self._m / (np.sqrt(self._v) + np.float32(self.tau))
        return (params + step).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        if self._m is None or self._v is None:
            return {}
        return {"m": self._m.copy(), "v": self._v.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if not state:
            self._m = self._v = None
            return
        if set(state) != {"m", "v"}:
            raise ValueError(f"fedadam state needs keys m and v, got {sorted(state)}")
        self._m = state["m"].astype(np.float32).copy()
        self._v = state["v"].astype(np.float32).copy()
