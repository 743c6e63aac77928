"""The coordinator: answers workers, runs rounds, commits models.

Rules of this file: it decides — who gets which task, what an update is worth, when a round
closes — and records every decision in storage before answering it. It knows messages, not
sockets: the transport feeds it one worker's messages at a time and sends back what it returns.
Clocks and the random source are injected so tests can drive time.

Round life: ``tick`` opens a round for every active task without one (recorded as "open"), and
closes rounds that reached their goal or their deadline. Closing folds the mean clipped update
into the model with the task's server optimizer and commits the round's outcome together with
the new model version in one transaction; a round below its minimum is abandoned and retried
from the same model. After a crash, rounds left "open" become "interrupted" and every task
resumes from its last committed model version.

A task with a privacy config is asked before each round whether one more release fits its ε
budget (the accountant runs off the event loop); if not, the round is not opened and the task
becomes "budget_exhausted" with the reason stored. Its ledger entry is committed with the
round's model, so the budget holds across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..aggregation import UpdateRejected
from ..aggregation.optimizers import decode_state, encode_state
from ..privacy import PrivacyLedger
from ..protocol import (
    Ack,
    Checkin,
    ComeBack,
    Hello,
    Reject,
    Task,
    TensorFrame,
    Update,
    Welcome,
    choose_version,
)
from ..protocol.versions import SUPPORTED_VERSIONS
from ..settings import Settings
from ..storage import (
    AsyncStore,
    LedgerEntry,
    ModelVersion,
    ParticipationEvent,
    RoundRecord,
    TaskRecord,
)
from .pace import PaceSteering
from .rounds import RoundState
from .runtime import RoundOutcome, TaskRuntime
from .taskconfig import TaskConfig

__all__ = ["Coordinator", "RoundListener"]

log = logging.getLogger("dandelion.coordinator")

RoundListener = Callable[[RoundOutcome], None]
_REFRESH_S = 2.0


class Coordinator:
    """Every task's rounds, behind async handlers for the worker conversation."""

    def __init__(
        self,
        store: AsyncStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random(secrets.randbits(64))
        self.tasks: dict[str, TaskRuntime] = {}
        self.pace = PaceSteering(
            min_s=settings.pace_min_s,
            max_s=settings.pace_max_s,
            target_rate=settings.target_checkins_per_s,
        )
        self._listeners: list[RoundListener] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._last_refresh = 0.0

    # -- start-up and tasks --------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every stored task from its last committed model version."""
        interrupted = await self.store.write(lambda s: s.mark_open_rounds_interrupted(self.clock()))
        if interrupted:
            log.info("marked %d round(s) interrupted by the last shutdown", interrupted)
        await self.refresh_tasks()

    async def refresh_tasks(self) -> None:
        """Load tasks added or changed in storage (by the CLI or the API) since the last look."""
        records: list[TaskRecord] = await self.store.read(lambda s: s.list_tasks())
        for record in records:
            runtime = self.tasks.get(record.name)
            if runtime is None:
                self.tasks[record.name] = await self._load(record)
            elif runtime.status != record.status:
                runtime.status = record.status
                runtime.reason = record.reason
        self._last_refresh = self.clock()

    async def _load(self, record: TaskRecord) -> TaskRuntime:
        config = TaskConfig.from_dict(record.config)
        name = record.name
        latest: ModelVersion | None = await self.store.read(lambda s: s.latest_model_version(name))
        if latest is None:
            raise RuntimeError(f"task {name!r} has no model version")
        last_round: int = await self.store.read(lambda s: s.last_round_number(name))
        completed = await self.store.read(lambda s: len(s.list_model_versions(name)) - 1)
        params = np.frombuffer(latest.params, dtype="<f4").astype(np.float32)
        state = decode_state(latest.optimizer_state) if latest.optimizer_state else None
        ledger, clip_norm = None, None
        if config.privacy is not None:
            entries: list[LedgerEntry] = await self.store.read(lambda s: s.list_ledger(name))
            ledger = PrivacyLedger.from_entries(
                config.privacy, ((e.sampling_rate, e.noise_multiplier, e.epsilon) for e in entries)
            )
            if entries:
                clip_norm = entries[-1].next_clip_norm
        log.info("task %s resumes at model version %d, round %d", name, latest.version, last_round)
        return TaskRuntime(
            config,
            record.status,
            params,
            latest.version,
            last_round,
            completed,
            state,
            ledger=ledger,
            clip_norm=clip_norm,
            reason=record.reason,
        )

    async def add_task(self, config: TaskConfig) -> TaskRuntime:
        """Create a task with its initial model (version 0) and start running it."""
        runtime = await self.store.write(lambda s: create_task(s, config, self.clock()))
        self.tasks[config.name] = runtime
        await self._open_round(runtime, self.clock())  # open for work at once, not next tick
        return runtime

    def add_listener(self, listener: RoundListener) -> None:
        """Call ``listener`` with a RoundOutcome after each round is committed."""
        self._listeners.append(listener)

    def round_waiting(self, name: str, k: int) -> str | None:
        """Why the open round of task ``name`` is still open, in words for operators (for
        example "96/100 reports, 4 assigned still training, deadline in 3 min"); counts below
        ``k`` read "<k". None when the task has no open round."""
        return None

    # -- the worker conversation -----------------------------------------------------------------

    async def on_hello(self, hello: Hello) -> Welcome | Reject:
        version = choose_version(hello.versions)
        if version is None:
            return Reject(
                "unsupported_version",
                f"this coordinator speaks protocol versions {list(SUPPORTED_VERSIONS)}",
                versions=SUPPORTED_VERSIONS,
            )
        now = self.clock()
        if hello.consent != "opted_in":
            # A hello that says "opted_out" is how a disconnected worker reports a withdrawal.
            await self.on_opt_out(hello.worker_id)
            return Reject("not_opted_in", "a worker takes part only after its user opts in")
        await self.store.write(
            lambda s: (
                s.set_consent(hello.worker_id, "opted_in", now),
                s.record_events(
                    [ParticipationEvent(hello.worker_id, None, None, "connected", now)]
                ),
            )
        )
        return Welcome(
            session=secrets.token_urlsafe(12),
            heartbeat_s=self.settings.heartbeat_s,
            max_message_bytes=self.settings.max_message_bytes,
            update_dtypes=("float32", "float16"),
            v=version,
        )

    async def on_checkin(self, worker_id: str, checkin: Checkin) -> tuple[Task, bytes] | ComeBack:
        now = self.clock()
        events = [ParticipationEvent(worker_id, None, None, "checked_in", now)]
        answer = self._select(worker_id, checkin, now)
        if isinstance(answer, ComeBack):
            events.append(ParticipationEvent(worker_id, None, None, "come_back", now))
            await self.store.record_events(events)
            return answer
        runtime, rnd, nonce = answer
        events.append(ParticipationEvent(worker_id, runtime.name, rnd.number, "selected", now))
        await self.store.record_events(events)
        config = runtime.config
        hyper = dict(config.hyper)
        if config.privacy is not None and config.privacy.adaptive:
            hyper["clip_norm"] = rnd.clip_norm  # this round's C: the worker's bit is against it
        task = Task(
            task=runtime.name,
            round=rnd.number,
            nonce=nonce,
            model_version=rnd.model_version,
            model=config.model.to_dict(),
            objective=config.objective,
            hyper=hyper,
            deadline_s=max(0.001, round(rnd.deadline - now, 3)),
            update_dtype=config.update_dtype,
            features=_task_features(config),
        )
        return task, rnd.model_frame

    def _select(
        self, worker_id: str, checkin: Checkin, now: float
    ) -> tuple[TaskRuntime, RoundState, str] | ComeBack:
        wanted = set(checkin.tasks) if checkin.tasks is not None else None
        eligibility = checkin.eligibility or {}
        candidates: list[tuple[TaskRuntime, RoundState]] = []
        reason, not_before = "no_task", None
        for runtime in self.tasks.values():
            if wanted is not None and runtime.name not in wanted:
                continue
            rnd = runtime.round
            if runtime.status != "active" or rnd is None or not rnd.open:
                if runtime.status in ("paused", "budget_exhausted") and reason == "no_task":
                    reason = runtime.status
                continue
            if any(
                eligibility.get(k) is not True for k, v in runtime.config.eligibility.items() if v
            ):
                reason = "not_eligible" if reason in ("no_task", "paused") else reason
                continue
            mine = rnd.assignment_of(worker_id)
            if mine is not None:
                if not rnd.has_reported(worker_id):
                    # The worker lost its task (reconnect): hand the same assignment back.
                    return runtime, rnd, mine.nonce
                reason, not_before = "already_reported", rnd.deadline
                continue
            if rnd.needed > 0:
                candidates.append((runtime, rnd))
            else:
                reason, not_before = "round_full", rnd.deadline
        if candidates:
            weights = [rnd.needed for _, rnd in candidates]
            runtime, rnd = self.rng.choices(candidates, weights=weights)[0]
            nonce = secrets.token_urlsafe(18)
            rnd.assign(worker_id, nonce, now)
            return runtime, rnd, nonce
        return ComeBack(self.pace.window(now, not_before=not_before), reason)

    async def on_update(self, worker_id: str, update: Update, frame: TensorFrame) -> Ack | Reject:
        now = self.clock()
        runtime = self.tasks.get(update.task)
        rnd = runtime.round if runtime is not None else None
        reason: str | None
        detail = ""
        if runtime is None:
            reason, detail = "not_assigned", f"no task {update.task!r}"
        elif rnd is None or rnd.number != update.round:
            stale = update.round <= runtime.last_round
            reason = "stale_round" if stale else "not_assigned"
            detail = f"round {update.round} is {'closed' if stale else 'unknown'}"
        else:
            reason = rnd.check(worker_id, update)
            detail = f"update for round {update.round}: {reason}" if reason else ""
            if reason is None:
                try:
                    rnd.add(update, frame)
                except UpdateRejected as exc:
                    reason, detail = exc.reason, str(exc)
                    rnd.summary.rejected += 1
        event = "rejected" if reason else "reported"
        record = ParticipationEvent(worker_id, update.task, update.round, event, now)
        await self.store.record_events([record])
        if reason is not None:
            return Reject(reason, detail[:512], update.task, update.round, update.nonce)
        assert runtime is not None
        assert rnd is not None
        if rnd.complete:
            self._close_soon(runtime, rnd)
        not_before = now if rnd.complete else rnd.deadline
        return Ack(
            update.task,
            update.round,
            update.nonce,
            retry_window=self.pace.window(now, not_before=not_before),
        )

    async def on_opt_out(self, worker_id: str) -> None:
        now = self.clock()
        await self.store.write(
            lambda s: (
                s.set_consent(worker_id, "opted_out", now),
                s.record_events([ParticipationEvent(worker_id, None, None, "opted_out", now)]),
            )
        )

    # -- rounds ----------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Open rounds that are wanted, close rounds that are due. Called every ``tick_s``."""
        now = self.clock()
        if now - self._last_refresh >= _REFRESH_S:
            await self.refresh_tasks()
        for runtime in list(self.tasks.values()):
            rnd = runtime.round
            if rnd is not None and rnd.open and (rnd.complete or rnd.due(now)):
                self._close_soon(runtime, rnd)
            elif runtime.wants_round:
                await self._open_round(runtime, now)

    async def _open_round(self, runtime: TaskRuntime, now: float) -> None:
        epsilon_after = None
        if runtime.ledger is not None:
            runtime.opening = True
            try:
                check = await asyncio.to_thread(runtime.ledger.check_next)
            finally:
                runtime.opening = False
            if runtime.status != "active" or runtime.round is not None:
                return  # paused, or opened by someone else, while the accountant ran
            if not check.allowed:
                await self._exhaust(runtime, check.reason)
                return
            epsilon_after = check.after
            now = self.clock()  # the accountant took a moment
        rnd = runtime.new_round(now)
        rnd.epsilon_after = epsilon_after
        record = RoundRecord(
            task=runtime.name,
            round=rnd.number,
            model_version=rnd.model_version,
            status="open",
            opened_at=now,
            closed_at=None,
            goal=runtime.config.rounds.goal,
            assigned=0,
            reported=0,
            rejected=0,
            dropped=0,
            metrics={},
        )
        await self.store.write(lambda s: s.open_round(record))
        runtime.last_round = rnd.number
        runtime.round = rnd

    async def _exhaust(self, runtime: TaskRuntime, reason: str) -> None:
        """Stop a task whose next round would pass its privacy budget, and say why."""
        name = runtime.name
        await self.store.write(lambda s: s.set_task_status(name, "budget_exhausted", reason))
        runtime.status, runtime.reason = "budget_exhausted", reason
        log.warning("task %s: round %d not started: %s", name, runtime.last_round + 1, reason)

    def _close_soon(self, runtime: TaskRuntime, rnd: RoundState) -> None:
        """Close ``rnd`` in the background, once: later callers (updates that were waiting for
        their commit, the next tick) find it closing or closed and leave it be."""
        if runtime.closing or runtime.round is not rnd or not rnd.open:
            return
        runtime.closing = True
        task = asyncio.get_running_loop().create_task(self._close_round(runtime, rnd))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_round(self, runtime: TaskRuntime, rnd: RoundState) -> None:
        try:
            await self._commit_round(runtime, rnd)
        except Exception:
            log.exception("could not commit round %d of task %s", rnd.number, runtime.name)
        finally:
            runtime.round = None
            runtime.closing = False

    async def _commit_round(self, runtime: TaskRuntime, rnd: RoundState) -> None:
        now = self.clock()
        mean = rnd.close()
        summary = rnd.summary
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
        try:
            await self.store.write(
                lambda s: s.commit_round_result(
                    task=runtime.name,
                    round=rnd.number,
                    status=status,
                    closed_at=now,
                    assigned=summary.assigned,
                    reported=summary.reported,
                    rejected=summary.rejected,
                    dropped=rnd.dropped,
                    metrics=metrics,
                    model_version=version,
                    ledger=ledger,
                )
            )
        except BaseException:
            runtime.optimizer.load_state(snapshot)  # the step never happened
            raise
        if version is not None:
            runtime.params = params
            runtime.model_version = version.version
            runtime.completed_rounds += 1
        if ledger is not None and runtime.ledger is not None:
            runtime.ledger.record(runtime.ledger.next_event(), ledger.epsilon)
            runtime.clip_norm = ledger.next_clip_norm
        log.info(
            "task %s round %d %s: %d/%d reported, model version %d",
            runtime.name,
            rnd.number,
            status,
            summary.reported,
            summary.assigned,
            runtime.model_version,
        )
        outcome = RoundOutcome(
            runtime.name,
            rnd.number,
            status,
            runtime.model_version,
            summary.reported,
            summary.assigned,
            rnd.dropped,
            metrics,
            runtime.params,
            rnd.opened_at,
            now,
        )
        for listener in self._listeners:
            listener(outcome)

    async def close(self) -> None:
        """Wait for rounds being committed; open rounds stay open (they resume as interrupted)."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _task_features(config: TaskConfig) -> dict[str, Any] | None:
    """The ``features`` a task message carries: for ``revisit_7d`` every parameter of its
    pipeline, defaults filled in, so that a worker never has to know the defaults."""
    if config.objective == "revisit_7d":
        from browser_worker.features import FeatureConfig

        try:
            return FeatureConfig.from_dict(config.features).to_dict()
        except (TypeError, ValueError):
            pass  # a task file the pipeline cannot read: sent as it was written
    return dict(config.features) or None


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


def create_task(store: object, config: TaskConfig, now: float) -> TaskRuntime:
    """Store a new task and its initial model; return its runtime. Runs in the writer thread."""
    from browser_worker.models import init_params

    from ..storage import StateStore

    assert isinstance(store, StateStore)
    params = np.asarray(
        init_params(config.model, random.Random(config.init_seed)), dtype=np.float32
    )
    store.create_task(TaskRecord(config.name, config.to_dict(), "active", now))
    store.save_model_version(
        ModelVersion(config.name, 0, 0, params.astype("<f4").tobytes(), b"", now, {})
    )
    return TaskRuntime(config, "active", params, 0, store.last_round_number(config.name), 0)
