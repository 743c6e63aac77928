"""What a WebSocket run checks about the coordinator it talks to.

``ServedTaskCheck``: the devices' data is built for the run's task (its objective and
features) and each round's model is scored with the run's model spec; an assignment of another
task (``--url`` of a coordinator serving something else) stops the run with one line naming
both, instead of training on data of the wrong shape. ``ServeOutput``: the standard error of the
``dandelion serve`` a run starts, held back until it listens, so that a refused start is one
line (its own error) and not a stream of output followed by a traceback.

``bundle_with`` builds the worker bundle that serve runs with for ``--with`` packages, and
``wait_port`` waits for it to listen. Rules of this file: no numpy; the stream is read by one
daemon thread.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..coordinator import TaskConfig
from ..protocol import Task
from .run import EmulationError

if TYPE_CHECKING:
    from ..plugins import PluginPackage

__all__ = ["ServeOutput", "ServedTaskCheck", "bundle_with", "exited", "wait_port"]


def _describe(name: str, objective: str, features: dict[str, Any], model: dict[str, Any]) -> str:
    knobs = " ".join(f"{k}={v}" for k, v in sorted(features.items()))
    return (
        f"task {name!r} (objective {objective}, features {knobs or 'none'}, model "
        f"{model.get('kind')} over {model.get('num_features')} features)"
    )


class ServedTaskCheck:
    """Compares each assignment with the run's task (as the coordinator would send it: its
    name, objective, complete features and model spec); ``found`` holds the first mismatch,
    in one line that says how to fix it."""

    def __init__(self, task: TaskConfig, url: str) -> None:
        self.ours = (task.name, task.objective, dict(task.features), task.model.to_dict())
        self.url = url
        self.found: str | None = None

    def matches(self, task: Task) -> bool:
        """Whether the devices can run this assignment as the run's task. Compared as data:
        the served model's kind need not be known here."""
        served = (task.task, task.objective, dict(task.features or {}), dict(task.model))
        if served == self.ours:
            return True
        if self.found is None:
            self.found = (
                f"the coordinator at {self.url} assigned {_describe(*served)}, but the devices' "
                f"data is built for {_describe(*self.ours)}: pass --task FILE with the served "
                "task's file (and --with PACKAGE for its objective's package, when it is your "
                "own)"
            )
        return False


class ServeOutput:
    """The started ``dandelion serve``'s standard error: held back until ``pass_through`` (it
    listens), then copied to ours; ``last_line`` is what a refused start said last."""

    def __init__(self, stream: IO[str]) -> None:
        self._recent: deque[str] = deque(maxlen=50)
        self._held: list[str] = []
        self._passing = False
        self._lock = threading.Lock()
        self._stream = stream
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            with self._lock:
                if line.strip():
                    self._recent.append(line.strip())
                if self._passing:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                elif len(self._held) < 1000:
                    self._held.append(line)

    def pass_through(self) -> None:
        with self._lock:
            self._passing = True
            sys.stderr.writelines(self._held)
            sys.stderr.flush()
            self._held.clear()

    def last_line(self, timeout: float = 5.0) -> str:
        """The last non-empty line ("" for none), once the stream has ended (it exited)."""
        self._thread.join(timeout)
        with self._lock:
            return self._recent[-1] if self._recent else ""

    def close(self, timeout: float = 5.0) -> None:
        """Once the process has exited: read what is left, then close the stream."""
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._stream.close()


def bundle_with(out: Path, plugins: tuple[PluginPackage, ...]) -> str:
    """A worker bundle with the run's task packages, for the ``dandelion serve`` started here
    (as ``dandelion bundle --with`` builds one): serve refuses a task its bundle lacks."""
    from ..bundle import BundleError, assemble_bundle
    from ..plugins import PluginError

    try:
        assemble_bundle(out, plugins=plugins)
    except (BundleError, PluginError) as exc:
        names = ", ".join(p.name for p in plugins)
        raise EmulationError(
            f"building a worker bundle with {names} for the coordinator failed: {exc}"
        ) from None
    return str(out)


def exited(returncode: int, last_line: str) -> EmulationError:
    """The error for a started serve that exited: its status and its own last line (without
    its ``dandelion serve:`` prefix)."""
    said = last_line.removeprefix("dandelion serve: ")
    return EmulationError(
        f"the dandelion serve started for the run exited with status {returncode}"
        + (f": {said}" if said else " (it printed nothing)")
    )


async def wait_port(port: int, proc: subprocess.Popen[str], output: ServeOutput) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            last = await asyncio.to_thread(output.last_line)
            raise exited(proc.returncode, last)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise EmulationError("the dandelion serve started for the run did not listen within 30 s")
