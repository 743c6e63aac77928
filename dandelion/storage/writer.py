"""The asyncio face of a StateStore: one writer thread with group commit, one reader thread.

``await store.write(fn)`` queues ``fn(state_store)`` for the writer thread and returns its result
once the transaction holding it has COMMITTED — "committed before acknowledged". The writer
takes every job queued while it was busy and runs them in one transaction, each job inside its
own savepoint: a job that raises is rolled back alone and its caller gets the exception; the
others commit. If the COMMIT itself fails (disk full, read-only file) every caller of that batch
gets a :class:`~dandelion.storage.errors.StorageError`, and the writer carries on with the next
batch. ``await store.read(fn)`` runs ``fn`` on a separate connection in a reader thread (WAL lets
it read while the writer writes). The event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ConflictError, StorageError
from .interface import StateStore
from .records import ParticipationEvent

__all__ = ["AsyncStore"]

log = logging.getLogger("dandelion.storage")
T = TypeVar("T")
_RECOVERED_AFTER_S = 2.0
_STOP = object()


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[StateStore], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def resolve(self, ok: bool, value: Any) -> None:
        def settle() -> None:
            if self.future.done():  # the caller gave up (cancelled)
                return
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)

        self.loop.call_soon_threadsafe(settle)


class AsyncStore:
    """Async access to a StateStore. ``factory`` makes one store per thread (one connection
    each); for an in-memory store it returns the same instance every time."""

    def __init__(self, factory: Callable[[], StateStore], *, max_batch: int = 1000) -> None:
        self._factory = factory
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.batches = 0  # committed transactions: fewer than jobs under load (group commit)
        #: Why the last write failed, while writes fail (disk full, read-only); None when fine.
        self.failure: str | None = None
        self._failed_at = 0.0
        self.jobs = 0
        self._writer = threading.Thread(target=self._run, name="dandelion-writer", daemon=True)
        self._writer.start()
        self._ready.wait()
        if self._start_error is not None:
            raise StorageError(f"cannot open state: {self._start_error}") from self._start_error
        self._events: list[ParticipationEvent] = []
        self._events_job: _Job | None = None
        self._events_lock = threading.Lock()
        self._reader_store: StateStore | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="dandelion-reader")
        self._closed = False

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, fn: Callable[[StateStore], T]) -> T:
        """Run ``fn`` in the writer thread; return its result after it is committed."""
        if self._closed:
            raise StorageError("store is closed")
        job = _Job(fn, asyncio.get_running_loop())
        self._queue.put(job)
        result: T = await job.future
        return result

    # Health, kept by the writer thread: a failing medium is logged once, not once a write.

    def _failed(self, exc: BaseException) -> None:
        self._failed_at = time.monotonic()
        if self.failure is None:
            log.error(
                "the state cannot be written: %s. The coordinator keeps running; it "
                "acknowledges nothing until writes succeed again",
                exc,
            )
        self.failure = str(exc)

    def _wrote(self) -> None:
        # A nearly full disk takes some writes and refuses others: writable again means no
        # failure for a while, not one write that happened to fit.
        if self.failure is not None and time.monotonic() - self._failed_at >= _RECOVERED_AFTER_S:
            log.warning("the state is writable again (after: %s)", self.failure)
            self.failure = None

    def _run(self) -> None:
        try:
            store = self._factory()
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit(store, batch)  # type: ignore[arg-type]
        store.close()

    def _commit(self, store: StateStore, batch: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        conn = getattr(store, "conn", None)
        changes = conn.total_changes if conn is not None else 0
        try:
            with store.transaction():
                for job in batch:
                    try:
                        with store.transaction():  # a savepoint: this job alone rolls back
                            results.append((True, job.fn(store)))
                    except Exception as exc:
                        results.append((False, exc))
        except Exception as exc:  # the COMMIT failed: nothing of the batch is stored
            # A full disk makes SQLite roll the transaction back itself; the job's own error
            # ("database or disk is full") says more than the failed COMMIT after it.
            cause = [
                v
                for ok, v in results
                if not ok and isinstance(v, StorageError) and not isinstance(v, ConflictError)
            ]
            error = cause[0] if cause else exc
            error = error if isinstance(error, StorageError) else StorageError(str(error))
            self._failed(error)
            for job in batch:
                job.resolve(False, error)
            return
        medium = [
            v
            for ok, v in results
            if not ok and isinstance(v, StorageError) and not isinstance(v, ConflictError)
        ]
        if medium:
            self._failed(medium[0])
        elif conn is None or conn.total_changes > changes:
            self._wrote()  # something was really written (a no-op commits even read-only)
        self.batches += 1
        self.jobs += len(batch)
        for job, (ok, value) in zip(batch, results, strict=True):
            job.resolve(ok, value)

    async def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        """Record participation events; return once they are committed.

        Events from every caller that arrive while the writer is busy share one job and one
        ``executemany``: the hot path of the coordinator (an event per acknowledgement) costs a
        row, not a transaction.
        """
        if self._closed:
            raise StorageError("store is closed")
        with self._events_lock:
            self._events.extend(events)
            job = self._events_job
            if job is None:
                # One job (and one future) for every caller until the writer takes the batch.
                job = self._events_job = _Job(self._flush_events, asyncio.get_running_loop())
                self._queue.put(job)
        # shield: a caller that gives up must not cancel the others' shared future.
        await asyncio.shield(job.future)

    def _flush_events(self, store: StateStore) -> None:
        # Runs in the writer thread: take every event queued so far; later ones start a new job.
        with self._events_lock:
            batch, self._events = self._events, []
            self._events_job = None
        store.record_events(batch)

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, fn: Callable[[StateStore], T]) -> T:
        """Run ``fn`` on the reader connection, in the reader thread."""
        if self._closed:
            raise StorageError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read, fn)

    def _read(self, fn: Callable[[StateStore], T]) -> T:
        if self._reader_store is None:
            self._reader_store = self._factory()
        return fn(self._reader_store)

    # -- lifecycle -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is queued, then stop both threads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)

        def close_reader() -> None:
            if self._reader_store is not None:
                self._reader_store.close()

        await asyncio.get_running_loop().run_in_executor(self._reader, close_reader)
        self._reader.shutdown(wait=True)
