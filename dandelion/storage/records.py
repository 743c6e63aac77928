"""What the coordinator stores: frozen records, one per table row.

Participation events name a pseudonymous worker id, a task, a round, an event and a time —
never an IP address, never browsing data. No individual update is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONSENT_STATES",
    "EVENTS",
    "ROUND_KINDS",
    "ROUND_STATUSES",
    "TASK_CHANGES",
    "TASK_STATUSES",
    "EvaluationRecord",
    "LedgerEntry",
    "ModelVersion",
    "ModelVersionInfo",
    "ParticipationEvent",
    "RoundCheckpoint",
    "RoundRecord",
    "ShardCheckpoint",
    "TaskChange",
    "TaskConfigVersion",
    "TaskRecord",
]

#: ``budget_exhausted``: the coordinator refused the next round (privacy budget); the task's
#: ``reason`` says why. ``archived``: stopped for good (it opens no round again). Which status
#: may follow which is ``dandelion.coordinator.taskchanges``' table, not storage's business.
TASK_STATUSES = frozenset({"active", "paused", "budget_exhausted", "archived"})
#: What an entry of a task's log records: its creation, a change of status, a new config version.
TASK_CHANGES = ("created", "status", "config")
ROUND_STATUSES = frozenset({"open", "completed", "abandoned", "interrupted"})
#: ``train``: the round's reports update the model; ``evaluate``: its workers score the model
#: on held-out examples, and the round's result is an :class:`EvaluationRecord`.
ROUND_KINDS = frozenset({"train", "evaluate"})
CONSENT_STATES = frozenset({"opted_in", "opted_out"})
#: Participation events, in the order a worker meets them. ``released``: an assignment whose
#: worker disconnected, went silent past its report timeout, or opted out; its slot is free.
EVENTS = (
    "connected",
    "checked_in",
    "selected",
    "come_back",
    "reported",
    "rejected",
    "dropped",
    "released",
    "opted_in",
    "opted_out",
)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    name: str
    config: dict[str, Any]
    status: str
    created_at: float
    reason: str = ""  # why the task has its status, when the coordinator set it
    config_version: int = 1  # the version of ``config`` (1 at creation, +1 per edit)


@dataclass(frozen=True, slots=True)
class TaskConfigVersion:
    """One version of a task's configuration, kept for good: version 1 is the task file it was
    created from, each edit adds the next."""

    task: str
    version: int
    config: dict[str, Any]
    created_at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One entry of a task's log: ``change`` is one of :data:`TASK_CHANGES`; ``status`` and
    ``config_version`` are the task's right after it."""

    task: str
    at: float
    change: str
    status: str
    config_version: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A committed model: version 0 is the initial model, version n the result of a round."""

    task: str
    version: int
    round: int
    params: bytes = field(repr=False)  # float32 little-endian
    optimizer_state: bytes = field(repr=False)
    created_at: float
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    """A model version without its blobs, for listings."""

    task: str
    version: int
    round: int
    created_at: float
    metrics: dict[str, Any]
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RoundRecord:
    task: str
    round: int
    model_version: int
    status: str
    opened_at: float
    closed_at: float | None
    goal: int
    assigned: int = 0
    reported: int = 0
    rejected: int = 0
    dropped: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    config_version: int = 1  # the task's config version the round opened with (and ran under)
    kind: str = "train"


@dataclass(frozen=True, slots=True)
class ParticipationEvent:
    worker_id: str
    task: str | None
    round: int | None
    event: str
    at: float


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One released DP round of a task: what it cost, and the ε spent after it.

    ``noise_multiplier`` (z) and ``sampling_rate`` (q) are what the accountant charged;
    ``clip_norm`` is the round's C and ``next_clip_norm`` the next round's (they differ only
    with adaptive clipping). Written in the same transaction as the round's model version.
    ``kind`` ``evaluate``: a released evaluation round (q = 1 and the z it was charged, the
    task's C unchanged), written with its :class:`EvaluationRecord`.
    """

    task: str
    round: int
    noise_multiplier: float
    sampling_rate: float
    epsilon: float
    delta: float
    accountant: str
    clip_norm: float
    next_clip_norm: float
    created_at: float
    kind: str = "train"


@dataclass(frozen=True, slots=True)
class RoundCheckpoint:
    """The live part of an open round, kept while it is open and deleted when it closes.

    ``secret`` keys the round's assignment nonces (so that a resumed round recognises the
    nonces it handed out); ``aggregate`` is the byte form of the round's aggregate over the
    reports acknowledged so far (None before the first checkpoint) — a sum over at least k
    updates, never one update. Which workers were selected and which reported is in the
    participation events, written in the same transaction as the aggregate.
    """

    task: str
    round: int
    secret: str = field(repr=False)
    aggregate: bytes | None = field(repr=False)
    rejected: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class ShardCheckpoint:
    """One cluster shard's part of an open round: the byte form of its partial aggregate over
    the ``reports`` it acknowledged (a sum over at least k updates, as a round checkpoint is),
    replaced by each of its checkpoints and deleted when the round closes. ``shard`` names the
    process; a shard that died leaves its row, and the leader merges it all the same."""

    task: str
    round: int
    shard: str
    aggregate: bytes = field(repr=False)
    reports: int
    rejected: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """The result of an evaluation round: model version ``model_version`` scored by
    ``reports`` workers on their held-out examples.

    ``withheld``: fewer than k reports (``monitor_k``), so nothing computed from them is kept —
    the sums and means are None. Otherwise the released sums — ``count`` (examples scored),
    ``loss_sum``, ``correct`` — each bounded per worker and, under ``[privacy]``, noised with
    ``noise_multiplier`` (None without privacy) times its bound; ``loss`` and ``accuracy`` are
    their ratios. Written in the same transaction as the round's close (and its ledger entry).
    Nothing per worker."""

    task: str
    round: int
    model_version: int
    reports: int
    withheld: bool
    count: float | None
    loss_sum: float | None
    correct: float | None
    loss: float | None
    accuracy: float | None
    noise_multiplier: float | None
    opened_at: float
    closed_at: float
