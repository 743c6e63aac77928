"""Peak memory figures of an emulation: this process's, or a process tree's sampled in a
thread (worker processes, Ray actors)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["TreeMemory", "peak_rss_mb", "tree_rss_mb"]


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
