"""What an emulation run reports: one record per round, the run's summary, and where they go
(JSON, CSV, the SVG figure), plus the progress line for long runs and peak memory figures.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "Progress",
    "RoundRecord",
    "RunResult",
    "TreeMemory",
    "peak_rss_mb",
    "tree_rss_mb",
    "write_results",
]


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One closed round, as the emulator saw it."""

    round: int
    status: str  # completed | abandoned
    assigned: int
    reported: int
    dropped: int
    accuracy: float | None  # the model after the round, on held-out users (None: regression)
    loss: float | None  # held-out log-loss of that model (mean half squared error: regression)
    train_loss: float | None  # workers' reported loss of the model they received
    virtual_s: float  # virtual time at the close, since the start
    wall_s: float  # wall time at the close, since the start
    sessions: int  # devices with a running worker at the close

    @property
    def participation(self) -> float:
        return self.reported / self.assigned if self.assigned else 0.0


@dataclass
class RunResult:
    mode: str
    backend: str
    population: int
    rounds: list[RoundRecord] = field(default_factory=list)
    wall_s: float = 0.0
    virtual_s: float = 0.0
    peak_rss_mb: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    params: Any = None  # the final model (numpy array), not serialized

    @property
    def completed(self) -> list[RoundRecord]:
        return [r for r in self.rounds if r.status == "completed"]

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object."""
        done = self.completed
        reports = sum(r.reported for r in done)
        final = done[-1] if done else None
        return {
            "mode": self.mode,
            "backend": self.backend,
            "population": self.population,
            "rounds": len(done),
            "rounds_abandoned": len(self.rounds) - len(done),
            "reports": reports,
            "wall_s": round(self.wall_s, 3),
            "virtual_s": round(self.virtual_s, 1),
            "clients_per_s": round(reports / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "final_accuracy": round(final.accuracy, 4) if final and final.accuracy else None,
            "final_loss": round(final.loss, 4) if final and final.loss else None,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "counters": dict(self.counters),
        }


def write_results(result: RunResult, out: str | Path) -> dict[str, str]:
    """Write ``rounds.csv``, ``result.json`` and ``rounds.svg`` into ``out``; return the paths."""
    from .plot import rounds_svg

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": str(folder / "rounds.csv"),
        "json": str(folder / "result.json"),
        "svg": str(folder / "rounds.svg"),
    }
    names = [*RoundRecord.__dataclass_fields__, "participation"]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for r in result.rounds:
            row = asdict(r)
            writer.writerow([*row.values(), round(r.participation, 4)])
    body = {**result.summary(), "per_round": [asdict(r) for r in result.rounds]}
    Path(paths["json"]).write_text(json.dumps(body, indent=2) + "\n")
    Path(paths["svg"]).write_text(rounds_svg(result.rounds, title=_title(result)))
    return paths


def _title(result: RunResult) -> str:
    return f"{result.population:,} emulated workers ({result.mode}, {result.backend})"


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_rss_mb(pid: int | None = None) -> float:
    """Resident memory now of ``pid`` (default: this process) and all its descendants."""
    root = pid or os.getpid()
    children: dict[int, list[int]] = {}
    rss: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        ppid, kb = 0, 0.0
        for line in text.splitlines():
            if line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                kb = float(line.split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = kb
    total, todo = 0.0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total / 1024


class TreeMemory:
    """Samples the resident memory of a process and its descendants in a thread until stopped;
    ``stop()`` returns the peak (MB)."""

    def __init__(self, pid: int | None = None, every_s: float = 0.5) -> None:
        import threading

        self.pid = pid or os.getpid()
        self.peak = 0.0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(self._every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, tree_rss_mb(self.pid))


class Progress:
    """A one-line progress display on a terminal (a plain line per update elsewhere)."""

    def __init__(self, total_rounds: int, *, stream: TextIO | None = None, every_s: float = 1.0):
        self.total = total_rounds
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.started = time.perf_counter()
        self._last = 0.0
        self._tty = self.stream.isatty()

    def update(self, done: int, record: RoundRecord, extra: str = "") -> None:
        """``done`` rounds of ``total`` completed; ``record`` is the latest."""
        now = time.perf_counter()
        if now - self._last < self.every_s and done < self.total:
            return
        self._last = now
        wall = now - self.started
        if record.accuracy is None and record.loss is not None:
            quality = f"loss {record.loss:.4f}"  # a regression task has no accuracy
        else:
            quality = f"accuracy {record.accuracy:.3f}" if record.accuracy is not None else "-"
        eta = wall / max(done, 1) * max(self.total - done, 0)
        line = (
            f"round {done}/{self.total} {record.status}: {record.reported}/"
            f"{record.assigned} reported, {quality}, virtual {record.virtual_s / 60:.1f} min, "
            f"wall {wall:.0f} s, eta {eta:.0f} s{extra}"
        )
        if self._tty:
            self.stream.write("\r\x1b[2K" + line)
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, line: str) -> None:
        if self._tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(line + "\n")
        self.stream.flush()
