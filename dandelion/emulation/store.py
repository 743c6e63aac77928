"""State for an emulation in one process: O(1) work per event, memory that does not grow with
the number of events.

``EmulationStore`` is the in-memory backend with two differences that a long emulated run
needs: participation events are counted per (minute, task, event) instead of kept one row each,
and a transaction snapshots only the small tables (tasks, rounds, model versions), not the
consent of every device. ``InlineStore`` is the coordinator's ``AsyncStore`` face for it without
threads: on a virtual clock a writer thread would let time jump while it commits.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ..storage import AsyncStore, MemoryStore, ParticipationEvent, StateStore

__all__ = ["EmulationStore", "InlineStore"]

T = TypeVar("T")
_BUCKET_S = 60.0


class EmulationStore(MemoryStore):
    """MemoryStore with counted events and compact consent (neither is rolled back by a failed
    transaction; nothing the coordinator writes alongside them can fail in an emulation)."""

    _STATE = tuple(n for n in MemoryStore._STATE if n not in ("_events", "_consent"))

    def __init__(self) -> None:
        super().__init__()
        self._counts: Counter[tuple[int, str | None, str]] = Counter()
        self._consent_of: dict[str, str] = {}

    def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        counts = self._counts
        for e in events:
            counts[(int(e.at // _BUCKET_S), e.task, e.event)] += 1

    def count_events(
        self, *, task: str | None = None, event: str | None = None, since: float | None = None
    ) -> int:
        return sum(
            n
            for (bucket, t, e), n in self._counts.items()
            if (task is None or t == task)
            and (event is None or e == event)
            and (since is None or bucket * _BUCKET_S >= since)
        )

    def event_counts(self, task: str | None = None) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_, t, e), n in self._counts.items():
            if task is None or t == task:
                out[e] += n
        return dict(out)

    def iter_events(self, task: str | None = None) -> Iterator[ParticipationEvent]:
        return iter(())  # counted, not kept

    def event_histogram(
        self, *, since: float, bucket_s: float, task: str | None = None
    ) -> list[tuple[float, str, int]]:
        out: Counter[tuple[float, str]] = Counter()
        for (bucket, t, e), n in self._counts.items():
            at = bucket * _BUCKET_S
            if at >= since and (task is None or t == task):
                out[(at // bucket_s * bucket_s, e)] += n
        return [(b, e, n) for (b, e), n in sorted(out.items())]

    def set_consent(self, worker_id: str, state: str, at: float) -> None:
        self._consent_of[worker_id] = state

    def get_consent(self, worker_id: str) -> str | None:
        return self._consent_of.get(worker_id)

    def consent_counts(self) -> dict[str, int]:
        return dict(Counter(self._consent_of.values()))


class InlineStore(AsyncStore):
    """An AsyncStore that runs every job at once, on the calling coroutine: each write is one
    transaction of the wrapped store, committed before the call returns."""

    def __init__(self, store: StateStore) -> None:  # no writer thread, no reader thread
        self._inline = store
        self._closed = False
        self.batches = 0
        self.jobs = 0

    @property
    def state(self) -> StateStore:
        return self._inline

    async def write(self, fn: Callable[[StateStore], T]) -> T:
        with self._inline.transaction():
            result = fn(self._inline)
        self.batches += 1
        self.jobs += 1
        return result

    async def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        self._inline.record_events(events)

    async def read(self, fn: Callable[[StateStore], T]) -> T:
        return fn(self._inline)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._inline.close()
