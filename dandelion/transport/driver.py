"""The conversation driver: a session event in, the coordinator's answer out — once, for every
transport.

Rules of this file: it moves events from a connection's ``CoordinatorSession`` to the
coordinator's handlers and their :class:`~dandelion.coordinator.Reply` back into the session,
and it keeps what every transport needs alike: the counters, the registry of which connection
is a worker's (a worker id connected twice keeps only its newest connection; an opt-out closes
the worker's open connection), the rate limit, how long a connection may stay silent, the
answer to a state file that cannot be written (nothing was recorded: the worker is told to try
again) and the freeing of a worker's assignment when its connection ends. It knows nothing of
sockets: a transport gives it a :class:`Link` (send, close) and feeds it whole messages. The
WebSocket endpoint (``websocket.py``) and the in-memory transport (``memory.py``) are its two
transports; the emulator, the DP demo and the tests use the latter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..coordinator import CLOSE_TRY_LATER, Coordinator, CoordinatorStopping, Reply
from ..protocol import (
    Ack,
    CheckinReceived,
    ComeBack,
    CoordinatorSession,
    Error,
    EvalReportReceived,
    HelloReceived,
    LocalProtocolError,
    OptOutReceived,
    ProtocolViolation,
    Reject,
    SecAggReceived,
    Task,
    UpdateReceived,
    Validator,
)
from ..protocol.secagg.messages import SecAggMessage
from ..settings import Settings
from ..storage import StorageError
from .limits import TokenBucket

__all__ = ["Conversation", "ConversationDriver", "DriverCounters", "Link"]

log = logging.getLogger("dandelion.transport")

#: WebSocket close code 1008 (policy violation): a connection replaced or timed out.
CLOSE_POLICY = 1008
_UNAVAILABLE = (
    "the coordinator cannot store its state right now; nothing was recorded, try again later"
)


class Link(Protocol):
    """What the driver needs of one connection."""

    @property
    def closed(self) -> bool: ...

    async def send(self, data: str | bytes, /) -> None: ...

    async def close(self, code: int, reason: str, /) -> None: ...


@dataclass(slots=True)
class DriverCounters:
    """What the driver has handled since start (read by ``/metrics`` and the emulator).
    ``outcomes`` counts answers by kind, e.g. ``ack``, ``task``, ``come_back_round_full``,
    ``update_rejected_duplicate`` (an evaluation report's reject counts there too)."""

    connections_opened: int = 0
    received: int = 0  # messages read, whatever became of them
    messages: int = 0  # events handed to the coordinator
    updates_accepted: int = 0
    updates_rejected: int = 0
    update_bytes: int = 0
    eval_reports_accepted: int = 0
    eval_reports_rejected: int = 0
    protocol_violations: int = 0
    rate_limited: int = 0
    storage_errors: int = 0
    refused_connections: int = 0
    replaced_connections: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class ConversationDriver:
    """Serves every connection's conversation with one coordinator."""

    def __init__(
        self, coordinator: Coordinator, settings: Settings, validate: Validator | None
    ) -> None:
        self.coordinator = coordinator
        self.settings = settings
        self.validate = validate
        self.counters = DriverCounters()
        self._by_worker: dict[str, Conversation] = {}
        self._closing: set[asyncio.Task[None]] = set()
        coordinator.secure.outlets.append(self)  # secure rounds push their phases' messages here

    def open(self, link: Link, *, clock: Any = None) -> Conversation:
        """Start the conversation of a new connection. Its rate limit runs on ``clock``, by
        default the event loop's: ``time.monotonic`` on a real loop, the virtual clock in an
        emulation (where a wall-clock limit would depend on how fast the machine runs it)."""
        self.counters.connections_opened += 1
        return Conversation(self, link, clock or asyncio.get_running_loop().time)

    def conversation_of(self, worker_id: str) -> Conversation | None:
        return self._by_worker.get(worker_id)

    async def push(self, worker_id: str, message: SecAggMessage | Ack | Reject) -> bool:
        """Send a message the coordinator decided on its own (a secure round's phase closed)
        on the worker's open conversation. False when it has none (it is gone)."""
        conversation = self._by_worker.get(worker_id)
        if conversation is None or conversation.link.closed:
            return False
        session = conversation.session
        with contextlib.suppress(LocalProtocolError):
            if isinstance(message, Ack | Reject):
                session.send(message)
            else:
                session.send_secagg(message)
        if isinstance(message, Reject):
            conversation._training_s = None
            self.counters.outcomes[_outcome(message)] += 1
        elif isinstance(message, Ack):
            conversation._training_s = None
            self.counters.outcomes["ack"] += 1
            self.counters.updates_accepted += 1
        with contextlib.suppress(ConnectionError):
            await conversation.flush()
        return True

    def _claim(self, worker: str, conversation: Conversation) -> None:
        old = self._by_worker.get(worker)
        self._by_worker[worker] = conversation
        if old is not None and old is not conversation and not old.link.closed:
            # The same worker reconnected (its old socket may be half-dead): newest wins.
            self.counters.replaced_connections += 1
            self.counters.outcomes["replaced_connection"] += 1
            self._close_later(old.link, CLOSE_POLICY, "already_connected")

    def _revoke(self, worker: str, conversation: Conversation) -> None:
        """After an opt-out: the worker's other open connection ends too."""
        old = self._by_worker.pop(worker, None)
        if old is not None and old is not conversation and not old.link.closed:
            old.revoked = True
            self._close_later(old.link, 1000, "opted out")

    def _forget(self, worker: str, conversation: Conversation) -> None:
        if self._by_worker.get(worker) is conversation:
            del self._by_worker[worker]

    def _close_later(self, link: Link, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(link.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(_quietly_done(self._closing))


class Conversation:
    """One connection's conversation: feed it each message with :meth:`receive`, call
    :meth:`end` when the connection is gone. ``quiet_s`` is how long the connection may now
    stay silent; ``session.close_code`` is set once it should close."""

    def __init__(self, driver: ConversationDriver, link: Link, clock: Any) -> None:
        s = driver.settings
        self.driver = driver
        self.link = link
        self.session = CoordinatorSession(
            validate=driver.validate, max_text_bytes=s.max_text_bytes, max_errors=s.max_errors
        )
        self._clock = clock
        self._bucket = TokenBucket(
            s.max_messages_per_s, max(10.0, 2 * s.max_messages_per_s), clock()
        )
        self.quiet_s = s.hello_timeout_s  # until welcomed: the hello timeout, from connecting
        self.revoked = False
        self._training_s: float | None = None  # silence allowed while training on a task
        self._sending = asyncio.Lock()

    @property
    def worker_id(self) -> str | None:
        return self.session.worker_id

    async def receive(self, data: str | bytes) -> None:
        """Handle one whole message and send what it brings back (closing the link if the
        session says so)."""
        driver, session = self.driver, self.session
        counters = driver.counters
        counters.received += 1
        if self.revoked:
            return
        if not self._bucket.take(self._clock()):
            counters.rate_limited += 1
            event: Any = session.refuse(
                f"more than {driver.settings.max_messages_per_s:g} messages per second; "
                "message dropped"
            )
        elif isinstance(data, str):
            event = session.receive_text(data)
        else:
            event = session.receive_bytes(data)
        if event is not None:
            await self._dispatch(event)
        del event  # an update frame is d floats: not kept while the connection idles
        await self.flush()
        if session.version is not None:
            # Once welcomed, silence beyond the idle timeout ends the connection; a worker
            # training on an assignment may stay silent until its deadline has passed.
            self.quiet_s = max(driver.settings.idle_timeout_s, self._training_s or 0.0)

    async def flush(self) -> None:
        session, link = self.session, self.link
        # One flush at a time: a message pushed by a secure round while this connection's own
        # answer (a task and its model frame) is still being written goes out after it.
        async with self._sending:
            for out in session.data_to_send():
                await link.send(out)
        if session.close_code is not None and not link.closed:
            await link.close(session.close_code, session.close_reason[:120])

    async def end(self) -> None:
        """The connection is gone: forget it, and free the worker's unreported assignment."""
        worker = self.session.worker_id
        if worker is None:
            return
        self.driver._forget(worker, self)
        if self.session.version is None:
            return
        replaced = self.driver.conversation_of(worker) is not None
        # On a storage error the store logged it; the slot is free in memory all the same.
        with contextlib.suppress(StorageError):
            await self.driver.coordinator.on_disconnect(worker, replaced=replaced)

    async def _dispatch(self, event: Any) -> None:
        driver = self.driver
        counters = driver.counters
        counters.messages += 1
        try:
            reply = await self._ask(event)
        except CoordinatorStopping:
            # The report was never stored and the connection is closing (1001): no answer;
            # the worker sends it again when it reconnects.
            return
        except StorageError:
            # The state file cannot be written (the store has logged why): nothing was
            # recorded. Say so; a worker retries later. A hello cannot be answered at all.
            counters.storage_errors += 1
            counters.outcomes["storage_error"] += 1
            self._send(Error("internal", _UNAVAILABLE))
            if isinstance(event, HelloReceived):
                self.session.close(CLOSE_TRY_LATER, "state unavailable")
            return
        if reply is not None:
            self._apply(event, reply)

    async def _ask(self, event: Any) -> Reply | None:
        coordinator = self.driver.coordinator
        counters = self.driver.counters
        worker = self.session.worker_id
        if isinstance(event, HelloReceived):
            counters.outcomes["hello"] += 1
            return await coordinator.on_hello(event.hello)
        if isinstance(event, ProtocolViolation):
            counters.protocol_violations += 1
            counters.outcomes["protocol_error"] += 1
            log.debug("worker %s: %s (%s)", worker, event.error.detail, event.error.code)
            return None
        assert worker is not None  # the session admits nothing else before a hello
        if isinstance(event, CheckinReceived):
            counters.outcomes["checkin"] += 1
            return await coordinator.on_checkin(worker, event.checkin)
        if isinstance(event, UpdateReceived):
            reply = await coordinator.on_update(worker, event.update, event.frame)
            if isinstance(reply.message, Ack):
                counters.updates_accepted += 1
                counters.update_bytes += len(event.frame.payload)
            else:
                counters.updates_rejected += 1
            return reply
        if isinstance(event, EvalReportReceived):
            reply = await coordinator.on_eval_report(worker, event.report)
            if isinstance(reply.message, Ack):
                counters.eval_reports_accepted += 1
            else:
                counters.eval_reports_rejected += 1
            return reply
        if isinstance(event, SecAggReceived):
            counters.outcomes[event.message.TYPE] += 1
            await coordinator.on_secagg(worker, event.message, event.frame)
            return None
        if isinstance(event, OptOutReceived):
            counters.outcomes["opt_out"] += 1
            return await coordinator.on_opt_out(worker)
        return None

    def _apply(self, event: Any, reply: Reply) -> None:
        driver, session = self.driver, self.session
        message = reply.message
        if message is not None:
            self._send(message, reply.frame)
            driver.counters.outcomes[_outcome(message)] += 1
        worker = session.worker_id or (
            event.hello.worker_id if isinstance(event, HelloReceived) else None
        )
        if worker is not None and reply.claim and message is not None:
            driver._claim(worker, self)
        if worker is not None and reply.revoke:
            driver._revoke(worker, self)
        if isinstance(message, Task):
            self._training_s = reply.quiet_s
        elif isinstance(message, Ack | Reject) and not isinstance(event, HelloReceived):
            self._training_s = None
        if isinstance(message, Reject) and message.reason == "over_capacity":
            session.close(CLOSE_TRY_LATER, "over capacity")
        elif reply.close_code is not None and session.close_code is None:
            session.close(reply.close_code, reply.close_reason)

    def _send(self, message: Any, frame: bytes | None = None) -> None:
        # The session may have moved on (closed by an opt-out or too many errors) while the
        # answer was being decided: there is nobody to tell.
        with contextlib.suppress(LocalProtocolError):
            self.session.send(message, frame)


def _outcome(message: Any) -> str:
    if isinstance(message, ComeBack):
        return f"come_back_{message.reason}"
    if isinstance(message, Reject):
        prefix = "update_rejected" if message.nonce is not None else "reject"
        return f"{prefix}_{message.reason}"
    return str(message.type)


def _quietly_done(tasks: set[asyncio.Task[None]]) -> Any:
    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done
