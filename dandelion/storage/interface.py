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

from .records import ModelVersion, ModelVersionInfo, ParticipationEvent, RoundRecord, TaskRecord

__all__ = ["StateStore"]


class StateStore(abc.ABC):
    # -- transactions --------------------------------------------------------------------------

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all (nests as savepoints)."""

    # -- tasks -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_task(self, record: TaskRecord) -> None: ...

    @abc.abstractmethod
    def get_task(self, name: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def list_tasks(self) -> list[TaskRecord]: ...

    @abc.abstractmethod
    def set_task_status(self, name: str, status: str) -> None: ...

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
    ) -> None: ...

    def commit_round_result(
        self, *, model_version: ModelVersion | None = None, **close: Any
    ) -> None:
        """Close a round and save the model it produced, in one transaction."""
        with self.transaction():
            self.close_round(**close)
            if model_version is not None:
                self.save_model_version(model_version)

    @abc.abstractmethod
    def get_round(self, task: str, round: int) -> RoundRecord | None: ...

    @abc.abstractmethod
    def list_rounds(self, task: str, limit: int = 100) -> list[RoundRecord]:
        """The latest ``limit`` rounds, newest first."""

    @abc.abstractmethod
    def last_round_number(self, task: str) -> int:
        """The highest round number ever opened for ``task`` (0 if none)."""

    @abc.abstractmethod
    def mark_open_rounds_interrupted(self, closed_at: float) -> int:
        """At start-up: rounds left open by a crash become "interrupted". Returns how many."""

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

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""

    def iter_events(self, task: str | None = None) -> Iterator[ParticipationEvent]:
        """All events (for export and tests); backends may override for efficiency."""
        raise NotImplementedError
