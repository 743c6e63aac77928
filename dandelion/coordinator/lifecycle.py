"""The round lifecycle: open, checkpoint, close and commit each task's rounds; resume them.

Rules of this file: every decision about a round's life is recorded in storage before anyone is
told of it. A round opens with a row in ``rounds`` and its checkpoint row (the key of its
assignment nonces) in one transaction. Reports are acknowledged only once a checkpoint holding
them is committed (``rounds.py`` says when a batch is sealed); the checkpoint carries the
batch's "reported" events in the same transaction. A round closes by its own rule — its goal, or
its deadline with its minimum — and its result, its model version, its ledger entry and the
events of its last batch commit together; the checkpoint row goes in that transaction. A commit
that fails leaves the round open (it is closed again at the next tick) and is logged once. A
crash leaves an open round with its last checkpoint, which :meth:`RoundLifecycle.resume` takes
up at start. Evaluation rounds (``evaluation.py``) live the same life; their result — and,
under privacy, their ledger entry — commits with their close instead of a model version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..aggregation import UpdateRejected
from ..aggregation.optimizers import encode_state
from ..privacy import BudgetCheck, RoundEvent, evaluation_event
from ..privacy.ftrl import position
from ..protocol import Ack, EvalReport, Reject, TensorFrame, Update
from ..storage import (
    AsyncStore,
    EvaluationRecord,
    LedgerEntry,
    ModelVersion,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    StateStore,
    StorageError,
)
from .coordination import RoundCoordination
from .entropy import Entropy
from .evaluation import EvalRound
from .pace import PaceSteering
from .rounds import Batch, RoundState
from .runtime import Round, RoundOutcome, TaskRuntime
from .secure_round import SecureRound

__all__ = ["CoordinatorStopping", "RoundAbandoned", "RoundLifecycle", "RoundListener"]

log = logging.getLogger("dandelion.coordinator")

RoundListener = Callable[[RoundOutcome], None]


class RoundAbandoned(Exception):
    """The round closed below its minimum: the reports waiting for its commit do not count."""


class CoordinatorStopping(Exception):
    """The coordinator stops while a report waits for its batch to be stored: the report is not
    acknowledged (nothing about it was stored); its worker sends it again to the coordinator
    that comes back, where the open round resumes from its last checkpoint."""


class RoundLifecycle:
    """Opens and closes rounds for the coordinator; holds the acknowledgements that wait for
    a checkpoint."""

    def __init__(
        self,
        store: AsyncStore,
        clock: Callable[[], float],
        pace: PaceSteering,
        step: int,
        *,
        entropy: Entropy | None = None,
        coordination: RoundCoordination | None = None,
    ) -> None:
        self.store = store
        #: Where checkpoints go and who closes a round: one process, or a cluster's shard.
        self.coordination = coordination or RoundCoordination()
        self.entropy = entropy or Entropy()
        self.clock = clock
        self.pace = pace
        self.step = step  # reports a checkpoint covers at least: k, the monitoring threshold
        self.listeners: list[RoundListener] = []
        self._background: set[asyncio.Task[None]] = set()

    # -- opening ---------------------------------------------------------------------------------

    async def open(self, runtime: TaskRuntime, now: float) -> None:
        """Open the task's next round — an evaluation round when one is due — after its
        privacy budget check."""
        kind = "evaluate" if runtime.evaluation_due else "train"
        epsilon_after = None
        if runtime.ledger is not None:
            runtime.opening = True
            try:
                check = await asyncio.to_thread(_budget_check, runtime, kind)
            finally:
                runtime.opening = False
            if runtime.status != "active" or runtime.round is not None:
                return  # paused, or opened by someone else, while the accountant ran
            if not check.allowed:
                await self._exhaust(runtime, check.reason)
                return
            epsilon_after = check.after
            now = self.clock()  # the accountant took a moment
        secret = self.entropy.round_secret()
        rnd = self.new_round(runtime, runtime.last_round + 1, now, secret, kind)
        rnd.epsilon_after = epsilon_after
        record = RoundRecord(
            task=runtime.name,
            round=rnd.number,
            model_version=rnd.model_version,
            status="open",
            opened_at=now,
            closed_at=None,
            goal=rnd.plan.goal,
            config_version=runtime.config_version,
            kind=rnd.kind,
        )
        checkpoint = RoundCheckpoint(runtime.name, rnd.number, secret, None, 0, now)
        await self._leader_write(
            record.task, lambda s: (s.open_round(record), s.save_round_checkpoint(checkpoint))
        )
        runtime.last_round = rnd.number
        runtime.round = rnd

    def new_round(
        self, runtime: TaskRuntime, number: int, opened_at: float, secret: str, kind: str
    ) -> Round:
        if kind == "evaluate":
            return EvalRound(
                runtime.config,
                number,
                runtime.model_version,
                runtime.model_frame(number),
                opened_at,
                secret=secret,
                step=self.step,
            )
        kind_of = SecureRound if runtime.config.secure_aggregation is not None else RoundState
        return kind_of(
            runtime.config,
            number,
            runtime.model_version,
            runtime.model_frame(number),
            opened_at,
            secret=secret,
            step=self.step,
            clip_norm=runtime.clip_norm,
        )

    async def resume(self, runtime: TaskRuntime) -> None:
        """Take up the task's round that a crash or a stop left open, where it stood. A round
        that cannot be resumed (no checkpoint: written by an older version) is closed as
        interrupted, and the task goes on with a new round."""
        name, number = runtime.name, runtime.last_round
        if number == 0:
            return
        record = await self.store.read(lambda s: s.get_round(name, number))
        if record is None or record.status != "open":
            return
        checkpoint = await self.store.read(lambda s: s.get_round_checkpoint(name, number))
        selected, reported = await self.store.read(lambda s: s.round_participants(name, number))
        rnd: Round | None = None
        if checkpoint is not None and record.model_version == runtime.model_version:
            try:
                rnd = self.new_round(
                    runtime, number, record.opened_at, checkpoint.secret, record.kind
                )
                rnd.resume(checkpoint.aggregate, selected, reported)
            except ValueError as exc:
                log.error("task %s: round %d cannot be resumed: %s", name, number, exc)
                rnd = None
        if rnd is None:
            now = self.clock()
            await self.store.write(
                lambda s: s.close_round(
                    task=name,
                    round=number,
                    status="interrupted",
                    closed_at=now,
                    assigned=len(selected),
                    reported=0,
                    rejected=0,
                    dropped=len(selected),
                    metrics={},
                )
            )
            return
        assert checkpoint is not None
        rnd.rejected = checkpoint.rejected
        if runtime.ledger is not None:
            check = await asyncio.to_thread(_budget_check, runtime, rnd.kind)
            rnd.epsilon_after = check.after
        runtime.round = rnd
        log.info(
            "task %s resumes %s round %d with %d acknowledged report(s)",
            name,
            "evaluation" if rnd.kind == "evaluate" else "training",
            number,
            rnd.reported,
        )

    async def _exhaust(self, runtime: TaskRuntime, reason: str) -> None:
        """Stop a task whose next round would pass its privacy budget, and say why."""
        name, now = runtime.name, self.clock()

        def exhaust(s: StateStore) -> bool:
            # Only over "active": a pause or an archive written meanwhile (by the CLI) stands.
            record = s.get_task(name)
            if record is None or record.status != "active":
                return False
            s.set_task_status(name, "budget_exhausted", reason, at=now)
            return True

        if not await self.store.write(exhaust):
            return  # the registry's next look brings the status that stands
        runtime.status, runtime.reason = "budget_exhausted", reason
        log.warning("task %s: round %d not started: %s", name, runtime.last_round + 1, reason)

    # -- reports ---------------------------------------------------------------------------------

    async def report(
        self,
        runtime: TaskRuntime,
        rnd: RoundState,
        worker_id: str,
        update: Update,
        frame: TensorFrame,
    ) -> Ack | Reject:
        """Fold one update into the round; answer once it is durable (or refused).

        Raises StorageError when the checkpoint (or commit) that would hold it failed: the
        update is not counted, and the worker may send it again."""
        now = self.clock()
        reason = rnd.check(worker_id, update)
        detail = f"update for round {update.round}: {reason}" if reason else ""
        batch: Batch[Any] | None = None
        if reason is None and not await self.coordination.claim(runtime, rnd, update.nonce):
            reason, detail = "duplicate", f"update for round {update.round}: reported already"
        elif reason is None:
            reason = rnd.check(worker_id, update)  # the claim may have waited for Redis
            detail = f"update for round {update.round}: {reason}" if reason else ""
            try:
                batch = None if reason else rnd.add(worker_id, update, frame, now)
            except UpdateRejected as exc:
                reason, detail = exc.reason, str(exc)
            if batch is None:
                self.coordination.unclaim(runtime, rnd, [update.nonce])
        if batch is None:
            rnd.refused(worker_id)
            assert reason is not None
            return await self.refuse(worker_id, update, reason, detail)
        return await self._acknowledge(runtime, rnd, batch, update)

    async def evaluate(
        self, runtime: TaskRuntime, rnd: EvalRound, worker_id: str, report: EvalReport
    ) -> Ack | Reject:
        """Fold one evaluation report into the round; answer once it is durable (or refused).
        Raises StorageError as :meth:`report` does."""
        now = self.clock()
        reason = rnd.check(worker_id, report)
        detail = f"eval_report for round {report.round}: {reason}" if reason else ""
        batch: Batch[Any] | None = None
        if reason is None and not await self.coordination.claim(runtime, rnd, report.nonce):
            reason, detail = "duplicate", f"eval_report for round {report.round}: reported already"
        elif reason is None:
            reason = rnd.check(worker_id, report)  # the claim may have waited for Redis
            detail = f"eval_report for round {report.round}: {reason}" if reason else ""
            try:
                batch = None if reason else rnd.add(worker_id, report, now)
            except UpdateRejected as exc:
                reason, detail = exc.reason, str(exc)
            if batch is None:
                self.coordination.unclaim(runtime, rnd, [report.nonce])
        if batch is None:
            rnd.refused(worker_id)
            assert reason is not None
            return await self.refuse(worker_id, report, reason, detail)
        return await self._acknowledge(runtime, rnd, batch, report)

    async def _acknowledge(
        self, runtime: TaskRuntime, rnd: Round, batch: Batch[Any], update: Update | EvalReport
    ) -> Ack | Reject:
        """The answer to a report now in ``batch``: once a checkpoint or the round's commit
        holds it, ``ack``; ``reject`` if the round closed below its minimum."""
        waiter = _waiter(batch)
        if self.coordination.complete(runtime, rnd):
            self.close_soon(runtime, rnd)
        elif not runtime.closing:
            self._checkpoint_soon(runtime, rnd)
        try:
            await asyncio.shield(waiter)
        except RoundAbandoned:
            detail = f"round {update.round} closed below its minimum of reports"
            return Reject("stale_round", detail, update.task, update.round, update.nonce)
        done = self.clock()
        return Ack(
            update.task,
            update.round,
            update.nonce,
            retry_window=self.pace.window(done, not_before=self.coordination.ends_by(rnd)),
        )

    async def refuse(
        self, worker_id: str, update: Update | EvalReport, reason: str, detail: str
    ) -> Reject:
        """Record that ``update`` was refused, and the reject that says why."""
        event = ParticipationEvent(worker_id, update.task, update.round, "rejected", self.clock())
        await self.store.record_events([event])
        return Reject(reason, detail[:512], update.task, update.round, update.nonce)

    async def _leader_write(self, task: str, write: Callable[[StateStore], Any]) -> Any:
        """``write`` in one transaction with the fence of the task's leader, if any."""
        fence = self.coordination.fence
        return await self.store.write(lambda s: (fence(s, task), write(s))[1])

    def _checkpoint_soon(self, runtime: TaskRuntime, rnd: Round) -> None:
        sealed = rnd.seal()
        if sealed is not None:
            self._spawn(self._checkpoint(runtime, rnd, *sealed))

    async def _checkpoint(
        self, runtime: TaskRuntime, rnd: Round, batch: Batch[Any], blob: bytes
    ) -> None:
        now = self.clock()
        name, number = runtime.name, rnd.number
        events = _reported_events(name, number, batch)
        checkpoint = RoundCheckpoint(name, number, rnd.secret, blob, rnd.rejected, now)
        try:
            save = self.coordination.checkpoint
            await self.store.write(
                lambda s: (s.record_events(events), save(s, runtime, rnd, checkpoint))
            )
        except Exception as exc:
            self.coordination.unclaim(runtime, rnd, _nonces(rnd, batch))
            rnd.dropped_batch(batch)
            _settle(batch, _as_storage_error(exc))
            if not isinstance(exc, StorageError):
                log.error("task %s: checkpoint of round %d failed: %r", name, number, exc)
        else:
            rnd.checkpointed(batch)
            _settle(batch, None)
            self.coordination.checkpointed(runtime, rnd, batch.count)
        if rnd.open and not runtime.closing:
            if self.coordination.complete(runtime, rnd):
                self.close_soon(runtime, rnd)
            else:
                self._checkpoint_soon(runtime, rnd)

    # -- closing ---------------------------------------------------------------------------------

    def close_soon(self, runtime: TaskRuntime, rnd: Round) -> None:
        """Close ``rnd`` in the background, once: later callers find it closing or closed and
        leave it be."""
        if runtime.closing or runtime.round is not rnd or not rnd.open:
            return
        runtime.closing = True
        self._spawn(self._close(runtime, rnd))

    async def _close(self, runtime: TaskRuntime, rnd: Round) -> None:
        try:
            while rnd.sealed is not None:  # let the checkpoint being written finish first
                with contextlib.suppress(Exception):
                    await asyncio.shield(_waiter(rnd.sealed))
            if not rnd.open or not await self.coordination.before_commit(runtime, rnd):
                pass
            elif isinstance(rnd, EvalRound):
                await self._commit_evaluation(runtime, rnd)
            else:
                await self._commit(runtime, rnd)
        finally:
            runtime.closing = False

    async def _commit(self, runtime: TaskRuntime, rnd: RoundState) -> None:
        now = self.clock()
        batch = rnd.close()
        privacy = runtime.config.privacy
        rng = self.entropy.noise_generator() if privacy is not None else None
        tree = None
        if privacy is not None and privacy.ftrl:
            assert runtime.tree_noise is not None  # attached when the task was loaded
            index, step = position(runtime.released + 1, privacy.min_separation)
            tree = (runtime.tree_noise, index, step)
        mean = rnd.result(rng, tree)
        metrics = rnd.metrics()
        version: ModelVersion | None = None
        params = runtime.params
        snapshot = runtime.optimizer.state()
        if mean is not None:
            params = runtime.optimizer.step(runtime.params, mean)
            version = ModelVersion(
                task=runtime.name,
                version=runtime.model_version + 1,
                round=rnd.number,
                params=params.astype("<f4").tobytes(),
                optimizer_state=encode_state(runtime.optimizer.state()),
                created_at=now,
                metrics=metrics,
            )
        status = "completed" if version is not None else "abandoned"
        ledger = _ledger_entry(runtime, rnd, now) if version is not None else None
        events = _reported_events(runtime.name, rnd.number, batch) if version is not None else []
        reported = rnd.reported if version is not None else rnd.committed.count
        try:
            await self._leader_write(
                runtime.name,
                lambda s: s.commit_round_result(
                    task=runtime.name,
                    round=rnd.number,
                    status=status,
                    closed_at=now,
                    assigned=rnd.assigned,
                    reported=reported,
                    rejected=rnd.rejected,
                    dropped=rnd.assigned - reported,
                    metrics=metrics,
                    model_version=version,
                    ledger=ledger,
                    events=events,
                ),
            )
        except Exception as exc:
            runtime.optimizer.load_state(snapshot)  # the step never happened
            rnd.reopen(batch)
            _settle(batch, _as_storage_error(exc))
            if not rnd.commit_failed:
                rnd.commit_failed = True
                log.error(
                    "task %s: round %d could not be committed (%s); it stays open and closes "
                    "again once the state file can be written",
                    runtime.name,
                    rnd.number,
                    exc,
                )
            return
        runtime.round = None
        if (latency := rnd.median_latency()) is not None:
            runtime.report_latency_s = latency
        _settle(batch, None if version is not None else RoundAbandoned())
        if version is not None:
            runtime.params = params
            runtime.model_version = version.version
            runtime.completed_rounds += 1
        if ledger is not None and runtime.ledger is not None:
            runtime.ledger.record(runtime.ledger.next_event(), ledger.epsilon)
            runtime.clip_norm = ledger.next_clip_norm
            runtime.participated([*rnd.reporters(), *batch.workers])
        log.info(
            "task %s round %d %s: %d/%d reported, model version %d",
            runtime.name,
            rnd.number,
            status,
            reported,
            rnd.assigned,
            runtime.model_version,
        )
        outcome = RoundOutcome(
            runtime.name,
            rnd.number,
            status,
            runtime.model_version,
            reported,
            rnd.assigned,
            rnd.assigned - reported,
            metrics,
            runtime.params,
            rnd.opened_at,
            now,
            dropped_by=rnd.unreported(completed=version is not None),
        )
        self.coordination.committed(runtime, rnd)
        for listener in self.listeners:
            listener(outcome)

    async def _commit_evaluation(self, runtime: TaskRuntime, rnd: EvalRound) -> None:
        """Close an evaluation round: its result (released, withheld or none when abandoned)
        and, when released under privacy, its ledger entry commit with the round's close."""
        now = self.clock()
        batch = rnd.close()
        rng = self.entropy.noise_generator() if runtime.config.privacy is not None else None
        result = rnd.conclude(rng, self.step, now)
        status = "abandoned" if result is None else "completed"
        ledger = _evaluation_ledger_entry(runtime, rnd, result, now)
        events = _reported_events(runtime.name, rnd.number, batch) if result is not None else []
        reported = rnd.reported if result is not None else rnd.committed.count
        metrics = rnd.metrics()
        try:
            await self._leader_write(
                runtime.name,
                lambda s: s.commit_round_result(
                    task=runtime.name,
                    round=rnd.number,
                    status=status,
                    closed_at=now,
                    assigned=rnd.assigned,
                    reported=reported,
                    rejected=rnd.rejected,
                    dropped=rnd.assigned - reported,
                    metrics=metrics,
                    evaluation=result,
                    ledger=ledger,
                    events=events,
                ),
            )
        except Exception as exc:
            rnd.reopen(batch)
            _settle(batch, _as_storage_error(exc))
            if not rnd.commit_failed:
                rnd.commit_failed = True
                log.error(
                    "task %s: evaluation round %d could not be committed (%s); it stays open "
                    "and closes again once the state file can be written",
                    runtime.name,
                    rnd.number,
                    exc,
                )
            return
        runtime.round = None
        # Scored, withheld or abandoned: this version is not evaluated again.
        runtime.evaluated_version = rnd.model_version
        _settle(batch, None if result is not None else RoundAbandoned())
        if ledger is not None and runtime.ledger is not None:
            runtime.ledger.record_evaluation(_evaluation_event(runtime), ledger.epsilon)
        shown = "abandoned" if result is None else "withheld" if result.withheld else "released"
        log.info(
            "task %s evaluation round %d %s: %d/%d reported, model version %d",
            runtime.name,
            rnd.number,
            shown,
            reported,
            rnd.assigned,
            rnd.model_version,
        )
        outcome = RoundOutcome(
            runtime.name,
            rnd.number,
            status,
            runtime.model_version,
            reported,
            rnd.assigned,
            rnd.assigned - reported,
            metrics,
            runtime.params,
            rnd.opened_at,
            now,
            kind="evaluate",
            dropped_by=rnd.unreported(completed=result is not None),
        )
        self.coordination.committed(runtime, rnd)
        for listener in self.listeners:
            listener(outcome)

    # -- assignments that lapse ------------------------------------------------------------------

    def release(
        self, runtime: TaskRuntime, worker_id: str, now: float, *, silent: bool = False
    ) -> ParticipationEvent | None:
        """Free ``worker_id``'s slot in the task's open round (``silent``: it stayed silent too
        long; else it went away); the event to record, if freed."""
        rnd = runtime.round
        if rnd is None or not rnd.open or not rnd.free(worker_id, silent=silent):
            return None
        return ParticipationEvent(worker_id, runtime.name, rnd.number, "released", now)

    def lapse(self, runtime: TaskRuntime, now: float) -> list[ParticipationEvent]:
        """Release the assignments of the task's open round that stayed silent too long."""
        rnd = runtime.round
        if rnd is None or not rnd.open:
            return []
        out = []
        for worker in rnd.silent(now):
            event = self.release(runtime, worker, now, silent=True)
            if event is not None:
                out.append(event)
        return out

    def release_waiting(self, rnd: Round) -> int:
        """At a stop: the reports in ``rnd``'s open batch (not yet sealed for a checkpoint)
        are dropped and their waits end with CoordinatorStopping, so that no connection's
        handler waits for a checkpoint that will never come. Returns how many."""
        batch: Batch[Any] = rnd.batch
        if not rnd.open or batch.count == 0:
            return 0
        count = batch.count
        rnd.dropped_batch(batch)
        _settle(batch, CoordinatorStopping())
        return count

    # -- background work -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Wait for checkpoints and commits under way; open rounds stay open (they resume)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
            # Awaiting futures that are all done already does not yield to the loop, so their
            # done callbacks (which discard them) would never run: drop them here.
            self._background.difference_update([t for t in self._background if t.done()])


def _waiter(batch: Batch[Any]) -> asyncio.Future[None]:
    if batch.waiter is None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Every reporter of the batch may have gone away: nobody else retrieves the outcome.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        batch.waiter = future
    waiter: asyncio.Future[None] = batch.waiter
    return waiter


def _settle(batch: Batch[Any], error: BaseException | None) -> None:
    waiter = batch.waiter
    if waiter is None or waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


def _nonces(rnd: Round, batch: Batch[Any]) -> list[str]:
    """The assignment nonces of the reports in ``batch``."""
    return [a.nonce for w in batch.workers if (a := rnd.assignment_of(w)) is not None]


def _as_storage_error(exc: BaseException) -> StorageError:
    return exc if isinstance(exc, StorageError) else StorageError(f"{type(exc).__name__}: {exc}")


def _reported_events(task: str, number: int, batch: Batch[Any]) -> list[ParticipationEvent]:
    return [
        ParticipationEvent(worker, task, number, "reported", at)
        for worker, at in zip(batch.workers, batch.reported_at, strict=True)
    ]


def _ledger_entry(runtime: TaskRuntime, rnd: RoundState, now: float) -> LedgerEntry | None:
    """The ledger entry of a released DP round (None without privacy)."""
    released = rnd.release
    if runtime.ledger is None or released is None:
        return None
    assert rnd.epsilon_after is not None  # set when the round was allowed to open
    event = runtime.ledger.next_event()
    privacy = runtime.ledger.config
    return LedgerEntry(
        task=runtime.name,
        round=rnd.number,
        noise_multiplier=event.z,
        sampling_rate=event.q,
        epsilon=rnd.epsilon_after,
        delta=privacy.delta,
        accountant=privacy.accountant,
        clip_norm=released.clip_norm,
        next_clip_norm=released.next_clip_norm,
        created_at=now,
    )


def _evaluation_event(runtime: TaskRuntime) -> RoundEvent:
    """What one released evaluation round of the task costs (a private task only)."""
    plan = runtime.config.evaluation
    assert plan is not None
    assert plan.noise_multiplier is not None
    return evaluation_event(plan.noise_multiplier)


def _budget_check(runtime: TaskRuntime, kind: str) -> BudgetCheck:
    """May the task release one more round of ``kind``? (Runs the accountant: off the loop.)"""
    ledger = runtime.ledger
    assert ledger is not None
    if kind == "evaluate":
        return ledger.check_evaluation(_evaluation_event(runtime))
    return ledger.check_next()


def _evaluation_ledger_entry(
    runtime: TaskRuntime, rnd: EvalRound, result: EvaluationRecord | None, now: float
) -> LedgerEntry | None:
    """The ledger entry of a released evaluation round of a private task (None otherwise): q = 1
    and the multiplier charged, the task's clip norm unchanged."""
    if runtime.ledger is None or result is None or result.withheld:
        return None
    assert rnd.epsilon_after is not None  # set when the round was allowed to open
    event = _evaluation_event(runtime)
    privacy = runtime.ledger.config
    return LedgerEntry(
        task=runtime.name,
        round=rnd.number,
        noise_multiplier=event.z,
        sampling_rate=event.q,
        epsilon=rnd.epsilon_after,
        delta=privacy.delta,
        accountant=privacy.accountant,
        clip_norm=runtime.clip_norm,
        next_clip_norm=runtime.clip_norm,
        created_at=now,
        kind="evaluate",
    )
