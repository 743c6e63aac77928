"""The worker's main loop: connect, check in, train, report, wait as told, again.

Runs unchanged in a browser (Pyodide) and in CPython: it speaks to the world only through a
:class:`~browser_worker.host.Host`, exposes ``async`` entry points and never calls
``asyncio.run``. It reports its state through ``on_status`` so a page or an extension can show
it in words.

Reconnects after a failure back off exponentially with full jitter (a random wait in
[0, backoff]), so a fleet that lost its coordinator does not return in lockstep.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dandelion.protocol import (
    Acked,
    Assigned,
    Checkin,
    ComeBackLater,
    ErrorReceived,
    Event,
    Hello,
    Rejected,
    RemoteProtocolError,
    RetryWindow,
    SecAggArrived,
    Task,
    TensorFrame,
    Welcomed,
    WorkerSession,
    floats_from_payload,
)
from dandelion.protocol.secagg import SecAggViolation
from dandelion.protocol.secagg.client import ClientState, SecAggClient
from dandelion.taskspec.models import ModelSpec

from .holdout import split
from .host import ConnectFailed, Connection, ConnectionClosed, Host
from .training import Hyper, LocalResult, evaluate_sums, train_local

__all__ = [
    "DataProvider",
    "NoLocalData",
    "Trainer",
    "Worker",
    "WorkerConfig",
    "WorkerStatus",
    "train_pure",
]

#: Builds the local examples for a task: ``(objective, features config, now) -> examples``.
DataProvider = Callable[[str, dict[str, Any], float], Sequence[Any]]
#: Trains one assignment: ``(spec, model frame, examples, hyper, rng) -> LocalResult``; raises
#: NoLocalData if the examples turn out to be empty.
Trainer = Callable[
    [ModelSpec, TensorFrame, Sequence[Any], Hyper, random.Random], Awaitable[LocalResult]
]


async def train_pure(
    spec: ModelSpec, frame: TensorFrame, examples: Sequence[Any], hyper: Hyper, rng: random.Random
) -> LocalResult:
    """The default trainer, the one a browser runs: decode the model, ``train_local``."""
    params = floats_from_payload(frame.payload, frame.header.dtype)
    return train_local(spec, params, examples, hyper, rng)


_ID_KEY = "dandelion.worker_id"
_CLIENT = "browser_worker/0.1"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    coordinator_url: str
    worker_id: str | None = None  # None: generated once and kept in the host's storage
    tasks: tuple[str, ...] | None = None
    eligibility: dict[str, bool] | None = None
    #: Wait on an open connection when the coordinator asks back within this many seconds;
    #: longer waits close the socket and reconnect later.
    keep_open_s: float = 60.0
    max_backoff_s: float = 600.0
    #: Fault injection for tests of secure rounds: when a message of this type arrives (for
    #: example ``secagg_keys``), close the connection instead of answering it, and stop — a
    #: dropout in that phase. None: never.
    secagg_leave_at: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What the worker is doing, for a person: ``state`` is one word, ``detail`` a sentence."""

    state: str = "idle"  # idle connecting connected training waiting stopped rejected
    detail: str = ""
    rounds_joined: int = 0
    updates_accepted: int = 0
    last_update_at: float | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_STATUS_FIELDS = frozenset(WorkerStatus.__dataclass_fields__)


class _Stop(Exception):
    """Ends the session loop without reconnecting."""


class Worker:
    """One federated-learning participant."""

    def __init__(
        self,
        host: Host,
        config: WorkerConfig,
        data: DataProvider,
        *,
        rng: random.Random | None = None,
        on_status: Callable[[WorkerStatus], None] | None = None,
        trainer: Trainer = train_pure,
    ) -> None:
        self.host = host
        self.config = config
        self.data = data
        self.trainer = trainer  # the emulator plugs in a vectorized one (same updates)
        self.rng = rng or random.Random(secrets.randbits(64))
        self.on_status = on_status
        self.status = WorkerStatus()
        self.worker_id = config.worker_id or self._stored_id()
        self._stopped = False
        self._sleep: asyncio.Future[None] | None = None
        self._conn: Connection | None = None
        self._session: WorkerSession | None = None

    def _stored_id(self) -> str:
        stored = self.host.storage.get(_ID_KEY)
        if stored:
            return stored
        new = secrets.token_urlsafe(16)
        self.host.storage.set(_ID_KEY, new)
        return new

    def _set(self, **changes: Any) -> None:
        # Field by field: dataclasses.replace walks the fields' metadata on every call, and a
        # worker sets its status a few times a round.
        if not changes.keys() <= _STATUS_FIELDS:
            raise TypeError(f"not status fields: {sorted(set(changes) - _STATUS_FIELDS)}")
        s = self.status
        get = changes.get
        self.status = WorkerStatus(
            get("state", s.state),
            get("detail", s.detail),
            get("rounds_joined", s.rounds_joined),
            get("updates_accepted", s.updates_accepted),
            get("last_update_at", s.last_update_at),
            get("last_error", s.last_error),
            get("extra", s.extra),
        )
        if self.on_status is not None:
            self.on_status(self.status)

    # -- control ---------------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Wait through the host's clock; stop() and opt_out() cut the wait short."""
        if self._stopped:
            return
        self._sleep = asyncio.ensure_future(self.host.sleep(seconds))
        try:
            await self._sleep
        except asyncio.CancelledError:
            if not self._stopped:
                raise  # cancelled from outside, not by stop()
        finally:
            self._sleep = None

    def stop(self) -> None:
        """Stop after the current step; closes the connection."""
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # Closing wakes a pending receive; the loop then sees _stopped.
            self._spawn(conn.close(1000, "stopped"))

    @staticmethod
    def _spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(lambda t: t.exception())

    async def opt_out(self) -> bool:
        """The user withdrew consent: tell the coordinator, stop, forget local state. Returns
        whether the coordinator was told (local state goes either way)."""
        session, conn = self._session, self._conn
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()
        try:
            if session is not None and conn is not None:
                session.send_opt_out("user withdrew consent")
                for out in session.data_to_send():
                    await conn.send(out)
                await conn.close(1000, "opted out")
            else:
                await asyncio.wait_for(self._announce_opt_out(), 10.0)
            delivered = True
        except Exception as exc:  # the coordinator will also see the socket close
            self.host.log("warning", f"opt-out not delivered: {exc}")
            delivered = False
        self.host.storage.clear()
        self._set(state="stopped", detail="You opted out. Training stopped; local data deleted.")
        return delivered

    async def _announce_opt_out(self) -> None:
        """No open session: a hello saying "opted_out" records the withdrawal."""
        conn = await self.host.connect(self.config.coordinator_url)
        try:
            session = WorkerSession()
            session.send_hello(self._hello("opted_out"))
            await self._exchange(conn, session)  # the coordinator answers reject
        finally:
            await _quiet_close(conn)

    def _hello(self, consent: Literal["opted_in", "opted_out"]) -> Hello:
        host = self.host
        return Hello(
            worker_id=self.worker_id,
            runtime={"kind": host.runtime_kind, "version": host.runtime_version[:64]},
            consent=consent,
            client=_CLIENT,
        )

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, *, max_updates: int | None = None) -> WorkerStatus:
        """Take part until stopped, opted out, rejected for good, or ``max_updates`` accepted."""
        backoff = 1.0
        while not self._stopped:
            self._set(state="connecting", detail="Connecting to the coordinator.")
            try:
                conn = await self.host.connect(self.config.coordinator_url)
            except ConnectFailed as exc:
                pause = self.rng.uniform(0, backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)
                self._set(
                    state="waiting",
                    detail=f"Coordinator unreachable; retrying in {pause:.0f} s.",
                    last_error=str(exc),
                )
                await self._pause(pause)
                continue
            backoff = 1.0
            self._conn = conn
            wait: float | None
            try:
                wait = await self._converse(conn, max_updates)
            except _Stop:
                wait = None
            except NoLocalData:
                wait = self.rng.uniform(300.0, 900.0)
            except ConnectionClosed as exc:
                wait = self.rng.uniform(0, backoff)
                if not self._stopped:
                    self._set(
                        state="waiting",
                        detail="Connection lost; reconnecting soon.",
                        last_error=str(exc),
                    )
            except RemoteProtocolError as exc:
                wait = self.rng.uniform(0, self.config.max_backoff_s / 10)
                self._set(
                    state="waiting",
                    detail="The coordinator sent something unexpected.",
                    last_error=str(exc),
                )
            finally:
                self._conn = None
                self._session = None
                await _quiet_close(conn)
            if wait is None or self._stopped:
                break
            await self._pause(wait)
        if self.status.state not in ("stopped", "rejected"):
            self._set(state="stopped", detail="Stopped.")
        return self.status

    async def _converse(self, conn: Connection, max_updates: int | None) -> float | None:
        session = WorkerSession()
        self._session = session
        session.send_hello(self._hello("opted_in"))
        event = await self._exchange(conn, session)
        if isinstance(event, Rejected):
            reject = event.reject
            self._set(state="rejected", detail=f"The coordinator declined: {reject.detail}")
            if reject.retry_window is None:
                raise _Stop
            return self._pick(reject.retry_window)
        if not isinstance(event, Welcomed):
            raise RemoteProtocolError(f"expected welcome, got {event!r}")
        self._set(state="connected", detail="Connected; asking for work.")
        while not self._stopped:
            if max_updates is not None and self.status.updates_accepted >= max_updates:
                raise _Stop
            session.send_checkin(
                Checkin(eligibility=self.config.eligibility, tasks=self.config.tasks)
            )
            event = await self._exchange(conn, session)
            window: RetryWindow | None = None
            if isinstance(event, Assigned):
                window = await self._train_and_report(conn, session, event)
            elif isinstance(event, ComeBackLater):
                window = event.come_back.retry_window
                self._set(state="waiting", detail=f"No work right now ({event.come_back.reason}).")
            elif isinstance(event, ErrorReceived):
                self._set(last_error=event.error.detail)
                if event.error.fatal:
                    return self.rng.uniform(0, 10.0)
            wait = self._pick(window) if window is not None else self.rng.uniform(0.5, 2.0)
            if window is not None and window.max_s > self.config.keep_open_s:
                return wait  # a long wait: close the socket, reconnect later
            await self._pause(wait)
        return None

    async def _train_and_report(
        self, conn: Connection, session: WorkerSession, event: Assigned
    ) -> RetryWindow | None:
        task = event.task
        if task.kind == "evaluate":
            return await self._evaluate_and_report(conn, session, event)
        if task.secure:
            return await self._secure_round(conn, session, event)
        self._set(
            state="training",
            detail=f"Training round {task.round} of {task.task}.",
            rounds_joined=self.status.rounds_joined + 1,
        )
        result = await self._train(task, event)
        session.send_update(
            result.clipped_delta,
            num_examples=result.num_examples,
            unclipped=result.unclipped,
            metrics={"loss": result.loss, "accuracy": result.accuracy},
            norm=result.norm,
        )
        reply = await self._exchange(conn, session)
        if isinstance(reply, Acked):
            self._set(
                state="connected",
                detail=f"Update for round {task.round} accepted.",
                updates_accepted=self.status.updates_accepted + 1,
                last_update_at=self.host.now(),
            )
            return reply.ack.retry_window
        if isinstance(reply, Rejected):
            self._set(state="connected", detail=f"Update not used: {reply.reject.reason}.")
            return reply.reject.retry_window
        if isinstance(reply, ErrorReceived):
            self._set(last_error=reply.error.detail)
        return None

    async def _train(self, task: Task, event: Assigned) -> LocalResult:
        spec = ModelSpec.from_dict(task.model)
        examples = self._local_examples(task)[0]
        if not examples:
            # Nothing to learn from yet: let the assignment lapse rather than report nothing.
            self._set(state="waiting", detail="Not enough local browsing data yet.")
            raise NoLocalData
        hyper = Hyper.from_dict(task.hyper)
        rng = random.Random(f"{self.worker_id}:{task.task}:{task.round}")
        return await self.trainer(spec, event.frame, examples, hyper, rng)

    async def _secure_round(
        self, conn: Connection, session: WorkerSession, event: Assigned
    ) -> RetryWindow | None:
        """A secure round (docs/secure_aggregation.md): answer the SecAgg+ phases; once its
        neighbours' shares are relayed, train, and send the clipped update masked. The
        coordinator never sees the update itself. Ends with ``ack`` (the masked vector is in
        the committed model), ``reject`` or ``secagg_abort``."""
        task = event.task
        self._set(
            state="training",
            detail=f"Secure round {task.round} of {task.task}: setting up.",
            rounds_joined=self.status.rounds_joined + 1,
        )
        try:
            crypto, ops = self.host.secagg_crypto()
        except NotImplementedError as exc:
            # This host cannot take part: the connection closes (a dropout the coordinator
            # sees at once) and the worker comes back much later, as without local data.
            self._set(
                state="waiting", detail="This host cannot run secure rounds.", last_error=str(exc)
            )
            raise NoLocalData from None
        client = SecAggClient(crypto, ops)
        while True:
            reply = await self._exchange(conn, session)
            if isinstance(reply, SecAggArrived):
                msg = reply.message
                if self.config.secagg_leave_at == msg.TYPE:
                    await conn.close(1000, "leaving")
                    raise _Stop
                if msg.TYPE == "secagg_abort" and client.state is ClientState.START:
                    self._set(state="connected", detail="Secure round did not start.")
                    return None  # the cohort was too small: nothing was set up
                try:
                    for out in await client.receive(msg):
                        session.send_secagg(out)
                    if client.state is ClientState.RELAYED:
                        self._set(detail=f"Secure round {task.round} of {task.task}: training.")
                        result = await self._train(task, event)
                        masked, frame = await client.mask(result.clipped_delta)
                        del result  # the plaintext update is not kept once masked
                        session.send_secagg(masked, frame)
                except SecAggViolation as exc:
                    # The coordinator broke the protocol: secrets are forgotten; leave.
                    raise RemoteProtocolError(f"secure round: {exc}") from None
                if client.state is ClientState.ABORTED:
                    reason = client.abort_reason or "aborted"
                    self._set(state="connected", detail=f"Secure round ended: {reason}.")
                    return None
            elif isinstance(reply, Acked):
                self._set(
                    state="connected",
                    detail=f"Masked update for round {task.round} is in the model.",
                    updates_accepted=self.status.updates_accepted + 1,
                    last_update_at=self.host.now(),
                )
                return reply.ack.retry_window
            elif isinstance(reply, Rejected):
                self._set(state="connected", detail=f"Update not used: {reply.reject.reason}.")
                return reply.reject.retry_window
            elif isinstance(reply, ErrorReceived):
                self._set(last_error=reply.error.detail)
                if reply.error.fatal:
                    return None

    def _local_examples(self, task: Task) -> tuple[Sequence[Any], list[Any]]:
        """The task's local examples: ``(to train on, held out for evaluation)``. Without
        ``evaluation`` in the task nothing is held out (the examples come as the data provider
        gave them)."""
        examples = self.data(task.objective, dict(task.features or {}), self.host.now())
        holdout = (task.evaluation or {}).get("holdout")
        return split(self.worker_id, task.task, examples, holdout)

    async def _evaluate_and_report(
        self, conn: Connection, session: WorkerSession, event: Assigned
    ) -> RetryWindow | None:
        """A task of kind ``evaluate``: score the received model on the held-out examples (at
        most ``max_examples`` of them, each loss clipped at ``max_loss``) and send the sums."""
        task = event.task
        self._set(state="training", detail=f"Evaluating round {task.round} of {task.task}.")
        held = self._local_examples(task)[1]
        if not held:
            # Nothing held out yet: let the assignment lapse, as training does without data.
            self._set(state="waiting", detail="No held-out browsing data to evaluate on yet.")
            raise NoLocalData
        bounds = task.evaluation or {}
        most = int(bounds.get("max_examples", len(held)))
        spec = ModelSpec.from_dict(task.model)
        params = floats_from_payload(event.frame.payload, event.frame.header.dtype)
        sums = evaluate_sums(spec, params, held[:most], float(bounds.get("max_loss", math.inf)))
        session.send_eval_report(count=sums.count, loss_sum=sums.loss_sum, correct=sums.correct)
        reply = await self._exchange(conn, session)
        if isinstance(reply, Acked):
            done = int(self.status.extra.get("evaluations_accepted", 0)) + 1
            self._set(
                state="connected",
                detail=f"Evaluation of round {task.round} accepted.",
                extra={**self.status.extra, "evaluations_accepted": done},
            )
            return reply.ack.retry_window
        if isinstance(reply, Rejected):
            self._set(state="connected", detail=f"Evaluation not used: {reply.reject.reason}.")
            return reply.reject.retry_window
        if isinstance(reply, ErrorReceived):
            self._set(last_error=reply.error.detail)
        return None

    async def _exchange(self, conn: Connection, session: WorkerSession) -> Event:
        """Send what the session queued, then read until the session yields an event."""
        for out in session.data_to_send():
            await conn.send(out)
        while True:
            data = await conn.receive()
            if isinstance(data, str):
                event = session.receive_text(data)
            else:
                event = session.receive_bytes(data)
            if event is not None:
                return event

    def _pick(self, window: RetryWindow) -> float:
        """A uniformly random moment in the window: what spreads a fleet's check-ins."""
        return self.rng.uniform(window.min_s, window.max_s)


class NoLocalData(Exception):
    """No local examples for the task: the assignment lapses and the worker comes back much
    later. Raised by the worker itself or by its trainer."""


async def _quiet_close(conn: Connection) -> None:
    try:
        await conn.close()
    except Exception:  # already gone
        return
