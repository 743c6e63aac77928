"""Virtual time for asyncio: an event loop whose clock jumps to the next timer when idle.

Every ``asyncio.sleep``, ``call_later``, ``wait_for`` timeout and every coordinator deadline
runs on the loop's clock, so a loop whose clock moves only when nothing is ready runs a
simulated day in the time its callbacks take, not in a day. The selector still polls real file
descriptors (the self-pipe that wakes the loop from other threads); while work submitted with
``run_in_executor`` (``asyncio.to_thread``) is running, the loop waits for it in real time
instead of jumping ahead, so a thread's result arrives at the virtual moment it was awaited.

Rules of this file: the loop never reads the wall clock for its own time; order is the order
timers are due (ties in the order they were scheduled), so a run is deterministic when the code
on it is.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector; where the loop would block for ``timeout`` seconds waiting
    for timers, it advances the virtual clock by ``timeout`` instead."""

    def __init__(self, loop_ref: Callable[[], VirtualTimeLoop]) -> None:
        self._real = selectors.DefaultSelector()
        self._loop_ref = loop_ref
        self._skipped = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop_ref()
        if loop.threads_pending:
            # A thread is computing something the loop awaits: wait for it for real.
            return self._real.select(None if timeout is None else min(timeout, 1.0))
        if timeout is not None and self._skipped < 64:
            # Only the loop's self-pipe is registered (signals, other threads): look at it on
            # every 64th pass, not every pass; the rest of the time there is nothing to poll.
            self._skipped += 1
            if timeout > 0:
                loop.advance(timeout)
            return []
        self._skipped = 0
        ready = self._real.select(0)
        if ready or timeout is None or timeout <= 0:
            if not ready and timeout is None:
                return self._real.select(None)  # nothing scheduled: only I/O can wake us
            return ready
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock starting at ``start`` (seconds)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.threads_pending = 0
        super().__init__(_VirtualSelector(lambda: self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (only the selector calls this, when the loop is idle)."""
        self._now += seconds

    def run_in_executor(  # type: ignore[override]  # same signature, spelt without TypeVarTuple
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.threads_pending += 1

        def done(_: asyncio.Future[T]) -> None:
            self.threads_pending -= 1

        future.add_done_callback(done)
        return future


def run_virtual[R](main: Coroutine[Any, Any, R], *, start: float = 0.0) -> R:
    """``asyncio.run(main)`` on a VirtualTimeLoop."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main)
