"""One live round: who was assigned, who reported, and the running clipped sum.

Rules of this file: it decides whether an update belongs to the round and folds it into the
aggregate; it never awaits, never reads the clock (``now`` is passed in), never stores anything.
Individual updates are added and forgotten: memory is O(d) whatever the number of reports.
With a privacy config, closing releases the DP-FedAvg output instead of the plain mean, with
noise from a generator made for this round alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from ..aggregation import StreamingSum, UpdateRejected, decode_update, update_weight
from ..privacy import Release, observed_bit, release, secure_generator
from ..protocol import TensorFrame, Update
from .taskconfig import TaskConfig

__all__ = ["Assignment", "RoundPhase", "RoundState", "RoundSummary"]


class RoundPhase(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Assignment:
    worker_id: str
    nonce: str
    assigned_at: float


@dataclass(slots=True)
class RoundSummary:
    """Aggregate figures of a round: never one worker's."""

    assigned: int = 0
    reported: int = 0
    rejected: int = 0
    clipped: int = 0
    unclipped_bits: int = 0
    weight: float = 0.0
    loss_sum: float = 0.0
    accuracy_sum: float = 0.0
    norm_sum: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.weight > 0:
            out["loss"] = self.loss_sum / self.weight
            out["accuracy"] = self.accuracy_sum / self.weight
        if self.reported:
            out["mean_norm"] = self.norm_sum / self.reported
            out["clipped_fraction"] = self.clipped / self.reported
            out["unclipped_fraction"] = self.unclipped_bits / self.reported
        return out


class RoundState:
    """A round from opening to closing.

    ``model_frame`` is the round's model, encoded once and sent as the same bytes to every worker
    of the round: its header's nonce is a per-round tag, not an assignment nonce. ``clip_norm``
    is the round's L2 bound (the task's, or with adaptive clipping the one the last round
    chose); ``epsilon_after`` is what the ledger will say once a DP round is released.
    """

    def __init__(
        self,
        config: TaskConfig,
        number: int,
        model_version: int,
        model_frame: bytes,
        opened_at: float,
        clip_norm: float | None = None,
    ) -> None:
        self.config = config
        self.clip_norm = clip_norm if clip_norm is not None else config.clip_norm
        self.epsilon_after: float | None = None
        self.release: Release | None = None
        self.number = number
        self.model_version = model_version
        self.opened_at = opened_at
        self.deadline = opened_at + config.rounds.deadline_s
        self.phase = RoundPhase.OPEN
        self.summary = RoundSummary()
        self.sum = StreamingSum(config.model.param_count)
        # nonce -> assignment; worker -> nonce. Both O(cohort), never O(population).
        self._by_nonce: dict[str, Assignment] = {}
        self._by_worker: dict[str, str] = {}
        self._reported: set[str] = set()
        self.model_frame = model_frame

    # -- selection -------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.phase is RoundPhase.OPEN

    @property
    def needed(self) -> int:
        """How many more workers the round would assign now."""
        if not self.open:
            return 0
        return max(0, self.config.rounds.max_assigned - len(self._by_nonce))

    def assignment_of(self, worker_id: str) -> Assignment | None:
        nonce = self._by_worker.get(worker_id)
        return self._by_nonce[nonce] if nonce is not None else None

    def has_reported(self, worker_id: str) -> bool:
        nonce = self._by_worker.get(worker_id)
        return nonce is not None and nonce in self._reported

    def assign(self, worker_id: str, nonce: str, now: float) -> Assignment:
        assignment = Assignment(worker_id, nonce, now)
        self._by_nonce[nonce] = assignment
        self._by_worker[worker_id] = nonce
        self.summary.assigned += 1
        return assignment

    # -- reporting -------------------------------------------------------------------------------

    def check(self, worker_id: str, update: Update) -> str | None:
        """Why ``update`` cannot count in this round, as a reject reason; None if it can."""
        assignment = self._by_nonce.get(update.nonce)
        if assignment is None or assignment.worker_id != worker_id:
            return "not_assigned"
        if update.nonce in self._reported:
            return "duplicate"
        if not self.open:
            return "stale_round"
        return None

    def add(self, update: Update, frame: TensorFrame) -> None:
        """Decode, check, clip and add one report. Raises UpdateRejected (reason attached)."""
        head = frame.header
        expected = self.config.model.param_count
        if head.shape != (expected,) or head.dtype != self.config.update_dtype:
            raise UpdateRejected(
                "wrong_shape",
                f"expected {self.config.update_dtype} of shape [{expected}], got "
                f"{head.dtype} of shape {list(head.shape)}",
            )
        values = decode_update(frame.payload, head.dtype, expected)
        server = self.config.server
        weight = update_weight(update.num_examples, server.weighting, server.max_examples or None)
        result = self.sum.add(values, weight=weight, bound=self.clip_norm)
        self._reported.add(update.nonce)
        summary = self.summary
        summary.reported += 1
        summary.clipped += int(result.clipped)
        summary.unclipped_bits += observed_bit(result.norm, self.clip_norm, update.unclipped)
        summary.weight += weight
        summary.norm_sum += result.norm
        loss, acc = update.metrics.get("loss"), update.metrics.get("accuracy")
        if isinstance(loss, int | float) and isinstance(acc, int | float):
            summary.loss_sum += weight * float(loss)
            summary.accuracy_sum += weight * float(acc)

    @property
    def complete(self) -> bool:
        return self.summary.reported >= self.config.rounds.goal

    def due(self, now: float) -> bool:
        return now >= self.deadline

    def close(self) -> np.ndarray | None:
        """Close the round; return the mean update if it met its minimum, else None (abandon).

        With a privacy config the mean is DP-FedAvg's release — the clipped sum plus Gaussian
        noise, over the expected number of reports — also kept as ``self.release``.
        """
        self.phase = RoundPhase.CLOSED
        if self.summary.reported < self.config.rounds.minimum or self.sum.count == 0:
            return None
        privacy = self.config.privacy
        if privacy is None:
            return self.sum.mean()
        self.release = release(
            privacy,
            self.sum.sum,
            self.summary.unclipped_bits,
            self.sum.count,
            self.clip_norm,
            secure_generator(),
        )
        return self.release.mean

    def metrics(self) -> dict[str, float]:
        """What the round record keeps. Under DP only released figures: the workers' own
        metrics (loss, accuracy, norms, clip counts) are not noised and are not kept."""
        if self.config.privacy is None:
            return self.summary.metrics()
        if self.release is None:
            return {}
        out = self.release.metrics()
        if self.epsilon_after is not None:
            out["epsilon"] = self.epsilon_after
        return out

    @property
    def dropped(self) -> int:
        return self.summary.assigned - self.summary.reported
