"""A task's live state in the coordinator: current model, optimizer and round.

Rules of this file: pure bookkeeping around numpy arrays; opening and closing rounds in storage
is the lifecycle's job (``lifecycle.py``). Nothing here awaits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..aggregation.optimizers import ServerOptimizer, make_optimizer
from ..privacy import PrivacyLedger
from ..privacy.ftrl import TreeNoise
from ..protocol import FrameHeader, encode_frame
from .evaluation import EvalRound
from .rounds import RoundState
from .taskconfig import TaskConfig

__all__ = ["Round", "RoundOutcome", "TaskRuntime"]

#: A task's open round: one that trains, or one that evaluates.
Round = RoundState | EvalRound


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What listeners hear when a round closes. ``params`` is the model after the round.
    ``kind`` ``evaluate``: an evaluation round, whose ``metrics`` are its released means (none
    when withheld) and which leaves the model as it was. ``dropped`` (assigned, not in the
    result) is the sum of ``dropped_by``: ``left``, ``unfinished`` and ``rejected``, as
    :meth:`~dandelion.coordinator.rounds.RoundBase.unreported` counts them at the close."""

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
    kind: str = "train"
    dropped_by: dict[str, int] = field(default_factory=dict)


class TaskRuntime:
    """One task as the coordinator runs it.

    With a privacy config, ``ledger`` holds what the task released and ``clip_norm`` the bound
    of its next round (it moves with adaptive clipping); both are rebuilt from storage on
    restart. ``evaluated_version`` is the model version the task's last evaluation round
    (closed by its own rule) scored: an evaluation is due when that is not the current one
    and ``[evaluation] every`` divides the completed training rounds.

    ``config`` is version ``config_version`` of the task's configuration: the one its open round
    runs under. ``reload`` says that storage holds a newer one, which the registry takes up
    (by building the runtime again, as a restart would) once the open round has ended.
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
        config_version: int = 1,
        evaluated_version: int | None = None,
    ) -> None:
        self.config = config
        self.config_version = config_version
        self.reload = False
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
        self.round: Round | None = None
        self.evaluated_version = evaluated_version
        #: DP-FTRL: the task's tree noise (from its stored key), and each recent participant's
        #: released-round index — what the minimum separation is enforced against.
        self.tree_noise: TreeNoise | None = None
        self.last_participation: dict[str, int] = {}
        self.closing = False
        #: The median report latency of the task's last closed round: when a round is full
        #: before its own reports say how long they take, pace steering expects this.
        self.report_latency_s: float | None = None
        self.opening = False  # a budget check is running before the next round opens

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def released(self) -> int:
        """Private rounds released so far (the ledger's length; 0 without privacy)."""
        return len(self.ledger.events) if self.ledger is not None else 0

    def separated(self, worker_id: str) -> bool:
        """Under DP-FTRL: whether the worker may take part in the next released round — its
        last participation at least ``min_separation`` released rounds before it."""
        privacy = self.config.privacy
        if privacy is None or not privacy.ftrl:
            return True
        last = self.last_participation.get(worker_id)
        return last is None or (self.released + 1) - last >= privacy.min_separation

    def participated(self, workers: list[str]) -> None:
        """Under DP-FTRL: ``workers`` took part in the round just released (index
        ``released``); forget participations too old to matter."""
        privacy = self.config.privacy
        if privacy is None or not privacy.ftrl:
            return
        index = self.released
        for worker in workers:
            self.last_participation[worker] = index
        horizon = index - privacy.min_separation
        stale = [w for w, i in self.last_participation.items() if i <= horizon]
        for worker in stale:
            del self.last_participation[worker]

    @property
    def finished(self) -> bool:
        plan = self.config.rounds
        return plan.max_rounds > 0 and self.completed_rounds >= plan.max_rounds

    @property
    def idle(self) -> bool:
        """No round is open, closing or being opened."""
        return self.round is None and not self.closing and not self.opening

    @property
    def evaluation_due(self) -> bool:
        """Whether the next round evaluates: ``every`` training rounds have completed since the
        last evaluation, whose model version was not scored yet (the last model too, once
        ``max_rounds`` is reached)."""
        plan = self.config.evaluation
        return (
            plan is not None
            and self.completed_rounds > 0
            and self.completed_rounds % plan.every == 0
            and self.evaluated_version != self.model_version
        )

    @property
    def wants_round(self) -> bool:
        return (
            self.status == "active"
            and self.idle
            and not self.reload
            and (not self.finished or self.evaluation_due)
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
