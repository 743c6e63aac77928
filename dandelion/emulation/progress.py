"""The progress of a run on standard error, in every mode (``--json`` and WebSocket mode too).

On a terminal it is a ``rich`` progress bar — completed rounds of the run's total, elapsed and
remaining time, and the last round's figures — redrawn in place. Anywhere else (a pipe, a file,
a CI log) redrawing would leave one line per frame, so it is a plain line per closed round, at
most one every ``every_s`` seconds (the last round always has its line), and a line every
``quiet_s`` seconds while no round closes (WebSocket mode: connections, updates trained).
Which of the two is rich's call (``Console.is_terminal``): ``TTY_COMPATIBLE=0`` asks for the
plain lines on a terminal, ``TTY_COMPATIBLE=1`` or ``FORCE_COLOR`` for the bar anywhere.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.progress import Progress as RichProgress
from rich.text import Text

from .results import RoundRecord

__all__ = ["Progress", "round_line"]


def round_line(record: RoundRecord) -> str:
    """A closed round in a few words: reports, quality of the model, ε, virtual time."""
    if record.accuracy is None and record.loss is not None:
        quality = f"loss {record.loss:.4f}"  # a regression task has no accuracy
    else:
        quality = f"accuracy {record.accuracy:.3f}" if record.accuracy is not None else "-"
    parts = [f"{record.reported}/{record.assigned} reported", quality]
    if record.epsilon is not None:
        parts.append(f"ε {record.epsilon:.3g}")
    if record.virtual_s:
        parts.append(f"virtual {record.virtual_s / 60:.1f} min")
    return ", ".join(parts)


class Progress:
    """Completed rounds out of ``total``; use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        total_rounds: int,
        *,
        stream: TextIO | None = None,
        every_s: float = 2.0,
        quiet_s: float = 30.0,
    ) -> None:
        self.total = total_rounds
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.quiet_s = quiet_s
        self.started = time.perf_counter()
        self.console = Console(file=self.stream, highlight=False)
        self._last = -float("inf")  # when the last plain line was written
        self._pending: str | None = None  # a round line held back by the rate limit
        self._done = 0
        self._bar: _Bar | None = None
        self._task: Any = None
        if self.console.is_terminal and not self.console.is_dumb_terminal:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = _Bar(
            TextColumn("rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            redirect_stdout=False,
        )
        self._bar.status = "starting"
        self._task = self._bar.add_task("rounds", total=self.total)
        self._bar.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, record: RoundRecord, extra: str = "") -> None:
        """A round closed (``record``); ``done`` rounds of ``total`` have completed."""
        self._done = done
        status = f"round {record.round} {record.status}: {round_line(record)}{extra}"
        if self._bar is not None:
            self._bar.status = status
            self._bar.update(self._task, completed=min(done, self.total))
            return
        wall = time.perf_counter() - self.started
        eta = wall / max(done, 1) * max(self.total - done, 0)
        line = f"{done}/{self.total} rounds, {status}, wall {wall:.0f} s, eta {eta:.0f} s"
        now = time.perf_counter()
        if now - self._last >= self.every_s or done >= self.total:
            self._write(line, now)
        else:
            self._pending = line

    def status(self, extra: str) -> None:
        """Nothing closed, but the run moves (``extra``: what it does now)."""
        if self._bar is not None:
            self._bar.status = extra
            self._bar.refresh()
            return
        now = time.perf_counter()
        if self._pending is not None and now - self._last >= self.every_s:
            self._write(self._pending, now)
        elif now - self._last >= self.quiet_s:
            wall = now - self.started
            self._write(f"{self._done}/{self.total} rounds, {extra}, wall {wall:.0f} s", now)

    def say(self, line: str) -> None:
        """A line of its own (a warning), above the bar on a terminal."""
        if self._bar is not None:
            self.console.print(line, markup=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._pending is not None:
            self._write(self._pending, time.perf_counter())

    def _write(self, line: str, now: float) -> None:
        self._pending = None
        self._last = now
        self.stream.write(line + "\n")
        self.stream.flush()


class _Bar(RichProgress):
    """rich's progress bar, with the last round's figures on a line of their own below it
    (cut to the terminal's width)."""

    status = ""

    def get_renderable(self) -> RenderableType:
        line = Text(self.status, no_wrap=True, overflow="ellipsis")
        return Group(self.make_tasks_table(self.tasks), line)
