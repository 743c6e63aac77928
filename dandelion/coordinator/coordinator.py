"""The coordinator: answers workers, runs rounds, commits models.

Rules of this file: it is the face that the conversation driver talks to — one handler per
worker message, each returning one :class:`~dandelion.coordinator.replies.Reply` — and it
delegates what it decides to three parts: the task registry (``registry.py``: one creation
path, resumption from storage, new config versions taken up between rounds), selection
(``selection.py``: who gets which assignment) and the round lifecycle (``lifecycle.py``: open,
checkpoint, close, commit, resume); what an edit or a status change may do is
``taskchanges.py``'s. It knows messages, not sockets. Clocks and the random sources are
injected so tests can drive time (and an emulation can seed its secrets: ``entropy.py``).

Every decision is recorded in storage before it is answered. An ``ack`` means the update is in
its round's stored aggregate and survives a crash; a round ends only by its own rule, never by a
crash: after a restart, the round left open resumes where its last checkpoint stood.

Raises :class:`~dandelion.storage.StorageError` from a handler when the state file cannot be
written: nothing of that message was recorded, and the driver tells the worker to try again.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..protocol import (
    Checkin,
    ComeBack,
    EvalReport,
    Hello,
    Reject,
    Task,
    TensorFrame,
    Update,
    Welcome,
    choose_version,
)
from ..protocol.secagg import CryptoHost, Mod32Ops
from ..protocol.secagg.messages import SecAggMessage
from ..protocol.versions import SUPPORTED_VERSIONS
from ..settings import Settings
from ..storage import AsyncStore, ParticipationEvent
from .coordination import LocalRounds, RoundCoordination
from .entropy import Entropy
from .evaluation import EvalRound
from .lifecycle import RoundLifecycle, RoundListener
from .pace import PaceSteering
from .registry import TaskRegistry, create_task
from .replies import Reply
from .rounds import RoundState
from .runtime import Round, TaskRuntime
from .secure_conductor import SecureRounds
from .secure_round import SecureRound
from .selection import select
from .taskchanges import change_status, edit_task
from .taskconfig import TaskConfig

__all__ = ["Coordinator", "RoundListener", "create_task"]

log = logging.getLogger("dandelion.coordinator")

_REFRESH_S = 2.0
#: How long past its round's deadline a worker with a task may stay silent (training,
#: then uploading) before its connection counts as idle.
_GRACE_S = 30.0


class Coordinator:
    """Every task's rounds, behind async handlers for the worker conversation."""

    def __init__(
        self,
        store: AsyncStore,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        entropy: Entropy | None = None,
        coordination: RoundCoordination | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random(secrets.randbits(64))
        self.entropy = entropy or Entropy()
        self.registry = TaskRegistry(store, self.entropy)
        self.pace = PaceSteering(
            min_s=settings.pace_min_s,
            max_s=settings.pace_max_s,
            target_rate=settings.target_checkins_per_s,
        )
        #: One process on its own (the default), or one shard of a cluster.
        self.coordination = coordination or LocalRounds()
        self.lifecycle = RoundLifecycle(
            store,
            clock,
            self.pace,
            settings.monitor_k,
            entropy=self.entropy,
            coordination=self.coordination,
        )
        #: Secure rounds' protocol; each transport adds its outlet (``secure.outlets``).
        self.secure = SecureRounds(clock, self.pace, _crypto_hosts, self.lifecycle.close_soon)
        self.lifecycle.listeners.append(self.secure.committed)
        self._last_refresh = 0.0
        self.coordination.attach(self)

    @property
    def tasks(self) -> dict[str, TaskRuntime]:
        return self.registry.tasks

    # -- start-up and tasks --------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stored task and resume the rounds a crash or a stop left open."""
        await self.refresh_tasks()
        await self.coordination.start()

    async def refresh_tasks(self) -> None:
        """Load tasks added or changed in storage (by the CLI or the API) since the last look."""
        for runtime in await self.registry.refresh():
            await self.coordination.resume(runtime)
        self._last_refresh = self.clock()
        await self._take_up_edits()

    async def _take_up_edits(self) -> None:
        """Tasks with a newer config version take it up once their open round has ended."""
        for runtime in list(self.tasks.values()):
            if runtime.reload and runtime.idle:
                await self.registry.reload(runtime)

    async def edit_task(
        self, name: str, config: TaskConfig, *, reason: str = "", allow_privacy_change: bool = False
    ) -> int:
        """Store ``config`` as the task's next config version (``taskchanges.edit_task``); the
        next round opens with it. Returns the version. Raises KeyError, TaskChangeError."""
        now = self.clock()
        version: int = await self.store.write(
            lambda s: edit_task(
                s, name, config, now, reason=reason, allow_privacy_change=allow_privacy_change
            )
        )
        await self.refresh_tasks()
        return version

    async def change_status(self, name: str, action: str, *, reason: str = "") -> str:
        """Pause, resume or archive a task (``taskchanges.change_status``); return its status.
        An open round ends by its own rule. Raises KeyError, TaskChangeError."""
        now = self.clock()
        status: str = await self.store.write(lambda s: change_status(s, name, action, now, reason))
        await self.refresh_tasks()
        return status

    async def add_task(self, config: TaskConfig) -> TaskRuntime:
        """Create a task with its initial model (version 0) and start running it."""
        runtime = await self.registry.add(config, self.clock())
        await self.coordination.open(runtime, self.clock())  # open for work at once
        return runtime

    def add_listener(self, listener: RoundListener) -> None:
        """Call ``listener`` with a RoundOutcome after each round is committed."""
        self.lifecycle.listeners.append(listener)

    def open_round(self, name: str) -> tuple[int, int] | None:
        """The number of task ``name``'s open round and its durable reports — across the
        cluster on a shard (as last seen), this process's own otherwise; None without one."""
        runtime = self.tasks.get(name)
        rnd = runtime.round if runtime is not None else None
        if rnd is None or not rnd.open:
            return None
        shared = self.coordination.reports(name, rnd)
        return rnd.number, rnd.reported if shared is None else shared

    def round_waiting(self, name: str, k: int) -> str | None:
        """Why the open round of task ``name`` is still open, in words for operators (for
        example "96/100 reports, 4 assigned still training, deadline in 3 min"); counts below
        ``k`` read "<k". None when the task has no open round."""
        runtime = self.tasks.get(name)
        rnd = runtime.round if runtime is not None else None
        if rnd is None or not rnd.open:
            return None
        shared = self.coordination.reports(name, rnd)
        if shared is None:
            return rnd.waiting(self.clock(), k)
        return rnd.waiting(self.clock(), k, cluster_reports=shared)

    # -- the worker conversation -----------------------------------------------------------------

    async def on_hello(self, hello: Hello) -> Reply:
        version = choose_version(hello.versions)
        if version is None:
            return Reply(
                Reject(
                    "unsupported_version",
                    f"this coordinator speaks protocol versions {list(SUPPORTED_VERSIONS)}",
                    versions=SUPPORTED_VERSIONS,
                )
            )
        now = self.clock()
        if hello.consent != "opted_in":
            # A hello that says "opted_out" is how a disconnected worker reports a withdrawal;
            # a session the worker still has open ends with it.
            await self.on_opt_out(hello.worker_id)
            reject = Reject("not_opted_in", "a worker takes part only after its user opts in")
            return Reply(reject, revoke=True)
        await self.store.write(
            lambda s: (
                s.set_consent(hello.worker_id, "opted_in", now),
                s.record_events(
                    [ParticipationEvent(hello.worker_id, None, None, "connected", now)]
                ),
            )
        )
        welcome = Welcome(
            session=secrets.token_urlsafe(12),
            heartbeat_s=self.settings.heartbeat_s,
            max_message_bytes=self.settings.max_message_bytes,
            update_dtypes=("float32", "float16"),
            v=version,
        )
        return Reply(welcome, claim=True)

    async def on_checkin(self, worker_id: str, checkin: Checkin) -> Reply:
        now = self.clock()
        events = [ParticipationEvent(worker_id, None, None, "checked_in", now)]
        answer = select(self.tasks.values(), worker_id, checkin, now, self.pace, self.rng)
        if isinstance(answer, ComeBack):
            events.append(ParticipationEvent(worker_id, None, None, "come_back", now))
            await self.store.record_events(events)
            return Reply(self.coordination.come_back(answer, now))
        runtime, rnd, assignment = answer
        if assignment.assigned_at == now and not await self.coordination.take_slot(runtime, rnd):
            rnd.free(worker_id)  # the cluster's over-selection budget is spent
            events.append(ParticipationEvent(worker_id, None, None, "come_back", now))
            await self.store.record_events(events)
            return Reply(ComeBack(self.pace.window(now, cap_s=4 * self.pace.min_s), "round_full"))
        events.append(ParticipationEvent(worker_id, runtime.name, rnd.number, "selected", now))
        try:
            await self.store.record_events(events)
        except BaseException:
            if rnd.free(worker_id):  # never told: the slot is free again
                self.coordination.released(runtime.name, rnd.number)
            raise
        if isinstance(rnd, SecureRound) and rnd.started:
            # Its cohort closed while the selection was being stored: not one of it.
            rnd.free(worker_id)
            return Reply(ComeBack(self.pace.window(now, cap_s=4 * self.pace.min_s), "round_full"))
        config = runtime.config
        hyper = dict(config.hyper)
        adaptive = config.privacy is not None and config.privacy.adaptive
        if adaptive and isinstance(rnd, RoundState):
            hyper["clip_norm"] = rnd.clip_norm  # this round's C: the worker's bit is against it
        if isinstance(rnd, SecureRound):
            # The worker's own clipping is all that bounds its update in the sum: to the
            # round's C (the server's clip_norm when set), the one its setup encodes with.
            hyper["clip_norm"] = rnd.clip_norm
        deadline_s = max(0.001, round(rnd.deadline - now, 3))
        task = Task(
            task=runtime.name,
            round=rnd.number,
            nonce=assignment.nonce,
            model_version=rnd.model_version,
            model=config.model.to_dict(),
            objective=config.objective,
            hyper=hyper,
            deadline_s=deadline_s,
            update_dtype=config.update_dtype,
            features=_task_features(config),
            kind=rnd.kind,
            evaluation=_task_evaluation(config),
            secure=isinstance(rnd, SecureRound),
        )
        if isinstance(rnd, SecureRound):
            rnd.told.add(worker_id)  # queued by the driver before anything else runs
        return Reply(task, rnd.model_frame, quiet_s=deadline_s + _GRACE_S)

    async def on_update(self, worker_id: str, update: Update, frame: TensorFrame) -> Reply:
        """Answer an update once it is durable: ``ack`` (in the round's stored aggregate) or
        ``reject`` with the reason. Raises StorageError (not counted; send it again)."""
        runtime, rnd, refusal = self._round_of(update, RoundState)
        if refusal is not None:
            return Reply(await self.lifecycle.refuse(worker_id, update, *refusal))
        assert runtime is not None
        assert isinstance(rnd, RoundState)
        answer = await self.lifecycle.report(runtime, rnd, worker_id, update, frame)
        return Reply(answer)

    async def on_eval_report(self, worker_id: str, report: EvalReport) -> Reply:
        """Answer an evaluation round's report once it is durable, as :meth:`on_update` does.
        Raises StorageError."""
        runtime, rnd, refusal = self._round_of(report, EvalRound)
        if refusal is not None:
            return Reply(await self.lifecycle.refuse(worker_id, report, *refusal))
        assert runtime is not None
        assert isinstance(rnd, EvalRound)
        return Reply(await self.lifecycle.evaluate(runtime, rnd, worker_id, report))

    def _round_of(
        self, report: Update | EvalReport, kind: type[Round]
    ) -> tuple[TaskRuntime | None, Round | None, tuple[str, str] | None]:
        """The task and open round a report names, or why it cannot count there: ``(reason,
        detail)`` of the reject (a report of the other kind of round is not assigned)."""
        runtime = self.tasks.get(report.task)
        rnd = runtime.round if runtime is not None else None
        if runtime is None:
            return None, None, ("not_assigned", f"no task {report.task!r}")
        if rnd is None or rnd.number != report.round:
            stale = report.round <= runtime.last_round
            reason = "stale_round" if stale else "not_assigned"
            return (
                None,
                None,
                (reason, f"round {report.round} is {'closed' if stale else 'unknown'}"),
            )
        if not isinstance(rnd, kind):
            answer = "an eval_report" if isinstance(rnd, EvalRound) else "an update"
            what = "an evaluation" if isinstance(rnd, EvalRound) else "a training"
            return (
                None,
                None,
                ("not_assigned", f"round {rnd.number} is {what} round: send {answer}"),
            )
        return runtime, rnd, None

    async def on_secagg(self, worker_id: str, msg: SecAggMessage, frame: bytes | None) -> None:
        """A secure round's message (``frame``: the masked frame after ``secagg_masked``).
        Nothing is answered on the spot: the round's phases push their messages as they
        close (``secure_conductor.py``)."""
        await self.secure.receive(self.tasks, worker_id, msg, frame)

    async def on_opt_out(self, worker_id: str) -> Reply:
        """Record the withdrawal and free the worker's assignments; the driver closes the
        worker's open connections (``revoke``)."""
        now = self.clock()
        events = [ParticipationEvent(worker_id, None, None, "opted_out", now)]
        for runtime in self.tasks.values():
            event = self.lifecycle.release(runtime, worker_id, now)
            if event is not None:
                events.append(event)
        await self.store.write(
            lambda s: (s.set_consent(worker_id, "opted_out", now), s.record_events(events))
        )
        self._released(events)
        return Reply(revoke=True, close_code=1000, close_reason="opted out")

    async def on_disconnect(self, worker_id: str, *, replaced: bool = False) -> None:
        """The worker's connection ended: its assignments that have not reported free their
        slots at once. ``replaced``: the worker has a newer connection already; the
        assignment stays, but a secure round it is in has lost it (its secrets were in the
        connection's worker session): a dropout."""
        if replaced:
            await self.secure.gone(self.tasks.values(), worker_id)
            return
        now = self.clock()
        events = [
            event
            for runtime in self.tasks.values()
            if (event := self.lifecycle.release(runtime, worker_id, now)) is not None
        ]
        await self.secure.gone(self.tasks.values(), worker_id)  # a dropout of a secure round
        if events:
            self._released(events)
            await self.store.record_events(events)

    def _released(self, events: list[ParticipationEvent]) -> None:
        for e in events:
            if e.event == "released" and e.task is not None and e.round is not None:
                self.coordination.released(e.task, e.round)

    # -- rounds ----------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Open rounds that are wanted, close rounds that are due, release assignments that
        stayed silent too long. Called every ``tick_s``."""
        now = self.clock()
        if now - self._last_refresh >= _REFRESH_S:
            await self.refresh_tasks()
        else:
            await self._take_up_edits()  # a round that just ended: the next opens with the edit
        await self.secure.tick(self.tasks.values(), now)
        await self.coordination.tick(now)
        lapsed: list[ParticipationEvent] = []
        for runtime in list(self.tasks.values()):
            rnd = runtime.round
            if rnd is not None and rnd.open and self.coordination.may_close(runtime, rnd, now):
                self.lifecycle.close_soon(runtime, rnd)
            elif runtime.wants_round:
                await self.coordination.open(runtime, now)
            else:
                lapsed.extend(self.lifecycle.lapse(runtime, now))
        if lapsed:
            self._released(lapsed)
            await self.store.record_events(lapsed)

    def release_waiting(self) -> int:
        """At a stop, before connections are awaited: the reports still waiting for their first
        or next checkpoint get no answer (CoordinatorStopping) instead of waiting for ever;
        checkpoints under way finish. Returns how many reports were let go."""
        released = 0
        for runtime in self.tasks.values():
            if runtime.round is not None:
                released += self.lifecycle.release_waiting(runtime.round)
        if released:
            log.info("stopping: %d report(s) not yet stored will be sent again", released)
        return released

    async def close(self) -> None:
        """Wait for checkpoints and commits under way; open rounds stay open (they resume)."""
        self.release_waiting()
        await self.lifecycle.close()
        await self.secure.close()
        await self.coordination.close()


def _crypto_hosts() -> tuple[CryptoHost, Mod32Ops]:
    """The coordinator's crypto for secure rounds: ``cryptography`` and numpy (loaded the first
    time a secure round starts)."""
    from ..crypto import CryptographyHost, NumpyMod32

    return CryptographyHost(), NumpyMod32()


def _task_evaluation(config: TaskConfig) -> dict[str, Any] | None:
    """A task message's ``evaluation``: what the worker holds out, and the bounds of its
    reports (None for a task without evaluation rounds: nothing is held out)."""
    plan = config.evaluation
    if plan is None:
        return None
    return {"holdout": plan.holdout, "max_examples": plan.max_examples, "max_loss": plan.max_loss}


def _task_features(config: TaskConfig) -> dict[str, Any] | None:
    """The ``features`` a task message carries: complete, the objective's defaults filled in
    when the task was configured, so that a worker never has to know the defaults."""
    return dict(config.features) or None
