"""The server optimizer interface: mean client delta in, next model out.

Deltas are ``local - global``: a plain step of 1.0 along the mean delta is FedAvg. An optimizer's
state (momentum, moments) is persisted beside each model version so a restarted coordinator
continues exactly where it stopped.
"""

from __future__ import annotations

import abc
import io
from typing import ClassVar

import numpy as np

__all__ = ["ServerOptimizer", "decode_state", "encode_state"]


class ServerOptimizer(abc.ABC):
    """Turns the round's mean update into the next model."""

    name: ClassVar[str]

    @abc.abstractmethod
    def step(self, params: np.ndarray, mean_delta: np.ndarray) -> np.ndarray:
        """Return the new parameters (float32, a new array); advances the state."""

    def state(self) -> dict[str, np.ndarray]:
        """A copy of the optimizer's state; empty for stateless optimizers."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state returned by :meth:`state`."""
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")


def encode_state(state: dict[str, np.ndarray]) -> bytes:
    """Pack a state into bytes (numpy's npz; no pickle)."""
    if not state:
        return b""
    buf = io.BytesIO()
    np.savez(buf, **state)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds
    return buf.getvalue()


def decode_state(blob: bytes) -> dict[str, np.ndarray]:
    """Unpack :func:`encode_state`'s bytes. Raises ValueError for anything else."""
    if not blob:
        return {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
