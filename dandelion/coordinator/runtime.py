"""A task's live state in the coordinator: current model, optimizer and round.

Rules of this file: pure bookkeeping around numpy arrays; opening and closing rounds in storage
is the lifecycle's job (``lifecycle.py``). Nothing here awaits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..aggregation.optimizers import ServerOptimizer, make_optimizer
from ..privacy import PrivacyLedger
from ..protocol import FrameHeader, encode_frame
from .rounds import RoundState
from .taskconfig import TaskConfig

__all__ = ["RoundOutcome", "TaskRuntime"]


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What listeners hear when a round closes. ``params`` is the model after the round."""

    task: str
    round: int
    status: str  # "completed" | "abandoned"
    model_version: int
    reported: int
    assigned: int
    dropped: int
    metrics: dict[str, float]
    params: np.ndarray = field(repr=False)
    opened_at: float
    closed_at: float


class TaskRuntime:
    """One task as the coordinator runs it.

    With a privacy config, ``ledger`` holds what the task released and ``clip_norm`` the bound
    of its next round (it moves with adaptive clipping); both are rebuilt from storage on
    restart.
    """

    def __init__(
        self,
        config: TaskConfig,
        status: str,
        params: np.ndarray,
        model_version: int,
        last_round: int,
        completed_rounds: int,
        optimizer_state: dict[str, np.ndarray] | None = None,
        *,
        ledger: PrivacyLedger | None = None,
        clip_norm: float | None = None,
        reason: str = "",
    ) -> None:
        self.config = config
        self.status = status
        self.reason = reason
        if ledger is None and config.privacy is not None:
            ledger = PrivacyLedger(config.privacy)
        self.ledger = ledger
        self.clip_norm = clip_norm if clip_norm is not None else config.clip_norm
        self.params = params
        self.model_version = model_version
        self.last_round = last_round
        self.completed_rounds = completed_rounds
        self.optimizer: ServerOptimizer = make_optimizer(
            config.server.optimizer, **config.server.optimizer_params
        )
        if optimizer_state:
            self.optimizer.load_state(optimizer_state)
        self.round: RoundState | None = None
        self.closing = False
        self.opening = False  # a budget check is running before the next round opens

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def finished(self) -> bool:
        plan = self.config.rounds
        return plan.max_rounds > 0 and self.completed_rounds >= plan.max_rounds

    @property
    def wants_round(self) -> bool:
        return (
            self.status == "active"
            and self.round is None
            and not self.closing
            and not self.opening
            and not self.finished
        )

    def model_frame(self, number: int) -> bytes:
        """The current model as the tensor frame every worker of round ``number`` receives."""
        header = FrameHeader(
            "model",
            self.name,
            number,
            f"m{self.model_version}r{number}",
            "float32",
            (self.params.size,),
        )
        return encode_frame(header, self.params.astype("<f4", copy=False).tobytes())
