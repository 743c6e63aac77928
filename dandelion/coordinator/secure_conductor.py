"""Running secure rounds: the coordinator's side of SecAgg+ over the workers' conversations
(docs/secure_aggregation.md, In the live coordinator).

Rules of this file: it moves messages between the workers and each open
:class:`~dandelion.coordinator.secure_round.SecureRound`'s server, and nothing else: it starts a
round's protocol once the cohort is closed (pushing ``secagg_setup`` to each participant), hands
each worker message to the server, tells it who is gone (a closed connection is a dropout),
ticks its phase deadlines, pushes what it queued, asks the lifecycle to close the round when the
protocol ends, and once that round's model is committed pushes ``ack`` to the workers whose
masked vector is in it — so an ack still means "the update is in the model". Messages go out
through the :class:`Outlet` of each transport (its conversation driver): the coordinator knows
no socket. It logs counts only, never a vector or a figure of one worker.

A round's unmasking (rebuilding the dropped participants' keys, then every pairwise and self
mask: seconds of CPU at n = 1,000, d = 100,000) runs on one worker thread of its own, so the
event loop goes on answering every other connection meanwhile; the round's server refuses what
arrives for it until the unmasking is over (``server.py``, *unmasking*).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..protocol import Ack, FrameError, MessageError, Reject
from ..protocol.secagg import CryptoHost, Mod32Ops, SecAggViolation
from ..protocol.secagg.messages import Abort, SecAggMessage
from .pace import PaceSteering
from .runtime import RoundOutcome, TaskRuntime
from .secure_round import SecureRound

__all__ = ["Outlet", "SecureRounds"]

log = logging.getLogger("dandelion.coordinator")


class Outlet(Protocol):
    """Where pushed messages go: the worker's open conversation, if it has one."""

    async def push(self, worker_id: str, message: SecAggMessage | Ack | Reject) -> bool: ...


class SecureRounds:
    """Drives every task's open secure round; one per coordinator."""

    def __init__(
        self,
        clock: Callable[[], float],
        pace: PaceSteering,
        crypto: Callable[[], tuple[CryptoHost, Mod32Ops]],
        close_soon: Callable[[TaskRuntime, SecureRound], None],
    ) -> None:
        self.clock = clock
        self.pace = pace
        self._crypto = crypto
        self._hosts: tuple[CryptoHost, Mod32Ops] | None = None
        self._close_soon = close_soon
        #: Where pushed messages go: each transport's conversation driver adds itself.
        self.outlets: list[Outlet] = []
        self.refused = 0  # protocol messages the servers refused (counts only)
        self._to_ack: dict[tuple[str, int], SecureRound] = {}  # done, waiting for its commit
        self._background: set[asyncio.Task[None]] = set()
        self._unmasker: ThreadPoolExecutor | None = None  # one thread, made at the first use

    def _host(self) -> tuple[CryptoHost, Mod32Ops]:
        if self._hosts is None:
            self._hosts = self._crypto()
        return self._hosts

    async def _offload(self, work: Callable[[], Awaitable[bytearray]]) -> bytearray:
        """Run a round's unmasking on the unmasking thread (the crypto host's coroutines
        never suspend: they run to the end on a loop of that thread's own)."""
        if self._unmasker is None:
            self._unmasker = ThreadPoolExecutor(1, thread_name_prefix="dandelion-unmask")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._unmasker, _run_to_end, work)

    # -- from the coordinator's tick -------------------------------------------------------------

    async def tick(self, runtimes: Iterable[TaskRuntime], now: float) -> None:
        """Start the protocol of cohorts that closed, end those too small, tick the phases."""
        for runtime in list(runtimes):
            rnd = runtime.round
            if not isinstance(rnd, SecureRound) or not rnd.open or runtime.closing:
                continue
            if rnd.ready(now):
                crypto, ops = self._host()
                if rnd.start(now, crypto, ops, offload=self._offload) is None:
                    await self._abort_cohort(rnd)
                    log.warning(
                        "task %s: secure round %d: %s", runtime.name, rnd.number, rnd.failure
                    )
                else:
                    log.info(
                        "task %s: secure round %d starts with %d participants",
                        runtime.name,
                        rnd.number,
                        len(rnd.by_index),
                    )
            elif rnd.short(now):
                rnd.fail("cohort_too_small")
                await self._abort_cohort(rnd)
            if rnd.server is not None:
                await rnd.server.tick(now)
            await self._flush(runtime, rnd)

    async def _abort_cohort(self, rnd: SecureRound) -> None:
        """The protocol will not start: the workers waiting for its setup are told."""
        for worker in rnd.cohort():
            await self._push(worker, Abort(rnd.config.name, rnd.number, "too_few_survivors"))

    # -- from the conversations ------------------------------------------------------------------

    async def receive(
        self,
        runtimes: dict[str, TaskRuntime],
        worker_id: str,
        msg: SecAggMessage,
        frame: bytes | None,
    ) -> None:
        """One worker message of a secure round. A message of no open round, or from a worker
        not in it, changes nothing; one that breaks the protocol drops its sender from the
        phase (the server's rule) and is counted."""
        runtime = runtimes.get(msg.task)
        rnd = runtime.round if runtime is not None else None
        if (
            runtime is None
            or not isinstance(rnd, SecureRound)
            or rnd.number != msg.round
            or rnd.server is None
            or worker_id not in rnd.index_of
        ):
            self.refused += 1
            return
        try:
            await rnd.server.receive(rnd.index_of[worker_id], msg, self.clock(), frame)
        except (SecAggViolation, FrameError, MessageError):
            self.refused += 1
        await self._flush(runtime, rnd)

    async def gone(self, runtimes: Iterable[TaskRuntime], worker_id: str) -> None:
        """The worker's connection ended: in a running secure round that is a dropout."""
        for runtime in list(runtimes):
            rnd = runtime.round
            if isinstance(rnd, SecureRound) and rnd.server is not None and rnd.open:
                index = rnd.index_of.get(worker_id)
                if index is not None:
                    rnd.gone.add(worker_id)  # nothing more is pushed to it, not even an ack
                    await rnd.server.drop(index, self.clock())
                    await self._flush(runtime, rnd)

    # -- out -------------------------------------------------------------------------------------

    async def _flush(self, runtime: TaskRuntime, rnd: SecureRound) -> None:
        server = rnd.server
        if server is not None:
            for index, message in server.take_outbox():
                worker = rnd.by_index[index]
                if isinstance(message, Abort):
                    rnd.told_to_stop.add(worker)
                if worker not in rnd.gone:  # a newer connection of it is in no such round
                    await self._push(worker, message)
            if server.finished and not rnd.ended:
                rnd.finish(self.clock())
                await self._turn_away(rnd)
                if rnd.failure is None:
                    self._to_ack[(runtime.name, rnd.number)] = rnd
                log.info(
                    "task %s: secure round %d %s%s: %d of %d in the sum (phases' live sets %s)",
                    runtime.name,
                    rnd.number,
                    server.phase.value,
                    f" ({server.abandon_reason})" if server.abandon_reason else "",
                    len(rnd.survivors),
                    len(rnd.by_index),
                    "/".join(str(len(live)) for live in server.live),
                )
        if rnd.complete:
            self._close_soon(runtime, rnd)

    async def _turn_away(self, rnd: SecureRound) -> None:
        """The participants dropped from a phase (too slow, or refused) that are still
        connected and were told nothing: ``reject`` (``stale_round``) ends the round for them."""
        told = rnd.told_to_stop | rnd.gone | set(rnd.survivors)
        for worker in rnd.index_of:
            if worker not in told:
                detail = f"round {rnd.number} was summed without this worker's masked vector"
                reject = Reject(
                    "stale_round", detail, rnd.config.name, rnd.number, _nonce(rnd, worker)
                )
                await self._push(worker, reject)

    async def _push(self, worker_id: str, message: SecAggMessage | Ack | Reject) -> None:
        for outlet in self.outlets:
            if await outlet.push(worker_id, message):
                return  # the worker's connection is on this transport

    def committed(self, outcome: RoundOutcome) -> None:
        """A round listener: once a secure round's model is committed, ack its survivors; when
        the protocol summed it but the round did not commit (fewer in the sum than the round's
        minimum), tell them so (``reject`` ``stale_round``) instead of leaving them waiting."""
        rnd = self._to_ack.pop((outcome.task, outcome.round), None)
        if rnd is None:
            return
        task, number = outcome.task, outcome.round
        window = self.pace.window(self.clock())
        detail = f"round {number} was abandoned: its sum was not used"

        def answer(worker: str) -> Ack | Reject:
            nonce = _nonce(rnd, worker)
            if outcome.status == "completed":
                return Ack(task, number, nonce, retry_window=window)
            return Reject("stale_round", detail, task, number, nonce, retry_window=window)

        # A survivor whose connection of the round ended has nobody to tell.
        answers = [(w, answer(w)) for w in rnd.survivors if w not in rnd.gone]
        self._spawn(self._push_all(answers))

    async def _push_all(self, pushes: list[tuple[str, Any]]) -> None:
        for worker, message in pushes:
            await self._push(worker, message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Wait for the acks being pushed; let the unmasking thread go."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._unmasker is not None:
            self._unmasker.shutdown(wait=False)
            self._unmasker = None


def _run_to_end(work: Callable[[], Awaitable[bytearray]]) -> bytearray:
    async def run() -> bytearray:
        return await work()

    return asyncio.run(run())


def _nonce(rnd: SecureRound, worker: str) -> str:
    mine = rnd.assignment_of(worker)
    assert mine is not None  # a participant was assigned
    return mine.nonce
