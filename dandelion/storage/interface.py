"""The one state interface. Every backend implements it; ``tests/test_storage_contract.py``
runs the same suite against each.

Methods are synchronous: the asyncio face is :class:`~dandelion.storage.writer.AsyncStore`,
which runs them on its writer thread (writes) or a reader thread (reads). Raise
:class:`~dandelion.storage.errors.ConflictError` for duplicates and
:class:`~dandelion.storage.errors.StorageError` for failures of the medium.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .records import (
    EvaluationRecord,
    LedgerEntry,
    ModelVersion,
    ModelVersionInfo,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    ShardCheckpoint,
    TaskChange,
    TaskConfigVersion,
    TaskRecord,
)

__all__ = ["StateStore"]


class StateStore(abc.ABC):
    # -- transactions --------------------------------------------------------------------------

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all (nests as savepoints)."""

    # -- tasks -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_task(self, record: TaskRecord) -> None:
        """Store a new task: its config as version ``record.config_version`` of its history and
        a "created" entry in its log (at ``created_at``). Raises ConflictError, ValueError."""

    @abc.abstractmethod
    def get_task(self, name: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def list_tasks(self) -> list[TaskRecord]: ...

    @abc.abstractmethod
    def set_task_status(
        self, name: str, status: str, reason: str = "", *, at: float | None = None
    ) -> None:
        """Set the status and its ``reason`` ('' clears it), and log the change at ``at`` (now
        when None). Raises KeyError, ValueError."""

    @abc.abstractmethod
    def set_task_config(
        self, name: str, config: dict[str, Any], *, at: float, reason: str = ""
    ) -> int:
        """Make ``config`` the task's next config version (the current one stays in its
        history), log it, and return its version. What may change is the caller's rule.
        Raises KeyError."""

    @abc.abstractmethod
    def list_task_configs(self, name: str) -> list[TaskConfigVersion]:
        """Every config version of the task, oldest first ([] for no such task)."""

    @abc.abstractmethod
    def get_task_config(self, name: str, version: int) -> TaskConfigVersion | None: ...

    @abc.abstractmethod
    def task_log(self, name: str) -> list[TaskChange]:
        """The task's log, oldest first: its creation, each status change, each new config."""

    # -- model versions --------------------------------------------------------------------------

    @abc.abstractmethod
    def save_model_version(self, version: ModelVersion) -> None: ...

    @abc.abstractmethod
    def latest_model_version(self, task: str) -> ModelVersion | None: ...

    @abc.abstractmethod
    def get_model_version(self, task: str, version: int) -> ModelVersion | None: ...

    @abc.abstractmethod
    def list_model_versions(self, task: str) -> list[ModelVersionInfo]: ...

    # -- rounds ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def open_round(self, record: RoundRecord) -> None: ...

    @abc.abstractmethod
    def save_round_checkpoint(self, checkpoint: RoundCheckpoint) -> None:
        """Insert or replace the live state of an open round. Raises KeyError when the round
        is not open."""

    @abc.abstractmethod
    def get_round_checkpoint(self, task: str, round: int) -> RoundCheckpoint | None: ...

    @abc.abstractmethod
    def save_shard_checkpoint(self, checkpoint: ShardCheckpoint) -> None:
        """Insert or replace one cluster shard's part of an open round. Raises KeyError when
        the round is not open or is sealed (its leader is closing it): the reports it would
        hold are not the round's. Waits while :meth:`seal_round` runs on the round."""

    @abc.abstractmethod
    def seal_round(self, task: str, round: int) -> list[ShardCheckpoint]:
        """Close an open round to shard checkpoints — a checkpoint being written finishes first,
        later ones raise KeyError — and return every shard's, by shard. Sealing again returns
        the same (a new leader finishing the close). Raises KeyError when the round is not
        open."""

    @abc.abstractmethod
    def list_shard_checkpoints(self, task: str, round: int) -> list[ShardCheckpoint]:
        """Every shard's part of round ``round`` of ``task``, by shard."""

    @abc.abstractmethod
    def round_participants(self, task: str, round: int) -> tuple[set[str], set[str]]:
        """``(selected, reported)``: the workers with a "selected" and with a "reported"
        event in round ``round`` of ``task``."""

    @abc.abstractmethod
    def close_round(
        self,
        *,
        task: str,
        round: int,
        status: str,
        closed_at: float,
        assigned: int,
        reported: int,
        rejected: int,
        dropped: int,
        metrics: dict[str, Any],
    ) -> None:
        """Close an open round and delete its checkpoint (and its shards' checkpoints and seal).
        Raises KeyError, ValueError."""

    def commit_round_result(
        self,
        *,
        model_version: ModelVersion | None = None,
        ledger: LedgerEntry | None = None,
        events: Sequence[ParticipationEvent] = (),
        evaluation: EvaluationRecord | None = None,
        **close: Any,
    ) -> None:
        """Close a round (with the events of its last reports) and save the model it produced
        (or, for an evaluation round, its result) and its privacy ledger entry, in one
        transaction."""
        with self.transaction():
            if events:
                self.record_events(events)
            self.close_round(**close)
            if model_version is not None:
                self.save_model_version(model_version)
            if evaluation is not None:
                self.save_evaluation(evaluation)
            if ledger is not None:
                self.add_ledger_entry(ledger)

    @abc.abstractmethod
    def fence(self, task: str, epoch: int) -> None:
        """Inside the transaction of a cluster leader's write (a round's commit): record
        ``epoch``, the fencing epoch of the lease it leads by, as ``task``'s, or raise
        FencedError when the task holds a larger one — a newer leader took over, and the
        transaction must roll back. An equal epoch passes (one leader's successive commits).
        Raises ConflictError for an unknown task."""

    @abc.abstractmethod
    def leader_epoch(self, task: str) -> int | None:
        """The largest epoch ``fence`` recorded for ``task``; None before the first."""

    @abc.abstractmethod
    def get_round(self, task: str, round: int) -> RoundRecord | None: ...

    @abc.abstractmethod
    def list_rounds(
        self, task: str, limit: int = 100, kind: str | None = None
    ) -> list[RoundRecord]:
        """The latest ``limit`` rounds (of ``kind`` only, when given), newest first."""

    @abc.abstractmethod
    def last_round_number(self, task: str) -> int:
        """The highest round number ever opened for ``task`` (0 if none)."""

    @abc.abstractmethod
    def mark_open_rounds_interrupted(self, closed_at: float) -> int:
        """At start-up: rounds left open by a crash become "interrupted". Returns how many."""

    @abc.abstractmethod
    def task_secret(self, task: str, name: str, make: str) -> str:
        """The task's secret called ``name``; stores ``make`` as it first (in the caller's
        transaction) when there is none. Never shown by any route or command."""

    # -- evaluation results ----------------------------------------------------------------------

    @abc.abstractmethod
    def save_evaluation(self, record: EvaluationRecord) -> None:
        """Store an evaluation round's result. Raises ConflictError for a round stored already,
        KeyError when ``record.round`` is not an evaluation round of the task."""

    @abc.abstractmethod
    def list_evaluations(self, task: str, limit: int = 100) -> list[EvaluationRecord]:
        """The latest ``limit`` evaluation results of ``task``, newest round first."""

    # -- privacy ledger --------------------------------------------------------------------------

    @abc.abstractmethod
    def add_ledger_entry(self, entry: LedgerEntry) -> None:
        """Record a released DP round. Raises ConflictError for a round recorded already."""

    @abc.abstractmethod
    def list_ledger(self, task: str) -> list[LedgerEntry]:
        """Every ledger entry of ``task``, oldest round first."""

    # -- participation and consent ---------------------------------------------------------------

    @abc.abstractmethod
    def record_events(self, events: Sequence[ParticipationEvent]) -> None: ...

    @abc.abstractmethod
    def count_events(
        self, *, task: str | None = None, event: str | None = None, since: float | None = None
    ) -> int: ...

    @abc.abstractmethod
    def event_counts(self, task: str | None = None) -> dict[str, int]: ...

    @abc.abstractmethod
    def set_consent(self, worker_id: str, state: str, at: float) -> None: ...

    @abc.abstractmethod
    def get_consent(self, worker_id: str) -> str | None: ...

    # -- monitoring (aggregates only: no per-worker rows leave these) ----------------------------

    @abc.abstractmethod
    def consent_counts(self) -> dict[str, int]:
        """How many workers are in each consent state."""

    @abc.abstractmethod
    def event_histogram(
        self, *, since: float, bucket_s: float, task: str | None = None
    ) -> list[tuple[float, str, int]]:
        """``(bucket start, event, count)`` for events at or after ``since``, in buckets of
        ``bucket_s`` seconds aligned to the epoch, ordered by bucket then event."""

    # -- admin tokens (only their SHA-256 is stored) ---------------------------------------------

    @abc.abstractmethod
    def add_admin_token(self, name: str, token_hash: str, at: float) -> None:
        """Raises ConflictError if ``name`` or the hash exists already."""

    @abc.abstractmethod
    def admin_token_name(self, token_hash: str) -> str | None:
        """The name of the token with this hash, or None."""

    @abc.abstractmethod
    def list_admin_tokens(self) -> list[tuple[str, float]]:
        """``(name, created_at)`` of every token, by name."""

    @abc.abstractmethod
    def revoke_admin_token(self, name: str) -> bool:
        """Delete the token called ``name``; False if there was none."""

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""

    def iter_events(self, task: str | None = None) -> Iterator[ParticipationEvent]:
        """All events (for export and tests); backends may override for efficiency."""
        raise NotImplementedError
