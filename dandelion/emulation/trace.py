"""A session trace (``dandelion emulate --trace FILE``): when each device was online, and its
bandwidth and speed in each online stretch, read from a CSV or JSON file.

One record per online session: ``device`` (its number, 0 .. size - 1), ``start_s`` and
``end_s`` (seconds since the run's start, ``start_s < end_s``) and, optionally, the session's
``down_mbps``, ``up_mbps``, ``latency_ms`` and ``examples_per_s`` (an empty CSV cell, a
missing JSON key or a JSON null: the population file's draw for that device). A CSV file has a
header row naming its columns, in any order; lines starting with ``#`` are comments. A JSON
file is ``{"sessions": [{"device": 0, "start_s": 0, "end_s": 3600, ...}, ...]}`` with JSON
numbers (``docs/trace.schema.json``). A device's sessions must not overlap; sessions that
touch (one ends where the next starts) make one online stretch with a change of link or speed
inside it. A device with no session is never online.

Rules of this file: standard library only; the file is read once and checked whole (every
problem raises :class:`TraceError` naming the file, the line or record, and the field).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .population import PopulationConfigError

__all__ = ["FIELDS", "Session", "Trace", "TraceError", "load_trace"]

#: The fields of a session record: (name, required, meaning).
FIELDS: tuple[tuple[str, bool, str], ...] = (
    ("device", True, "the device's number, an integer 0 .. size - 1"),
    ("start_s", True, "when the session starts: seconds since the run's start, >= 0"),
    ("end_s", True, "when it ends (> start_s): the device goes offline then"),
    ("down_mbps", False, "download bandwidth in the session (model frames), > 0"),
    ("up_mbps", False, "upload bandwidth in the session (update frames), > 0"),
    ("latency_ms", False, "added to each binary frame, >= 0"),
    ("examples_per_s", False, "training speed (examples x epochs per second), > 0"),
)
_NAMES = tuple(name for name, _, _ in FIELDS)
_OPTIONAL = _NAMES[3:]
_LOWER = {"down_mbps": 0.0, "up_mbps": 0.0, "latency_ms": -1.0, "examples_per_s": 0.0}


class TraceError(PopulationConfigError):
    """A trace that cannot be replayed: the message names the file, the record and the field."""


@dataclass(frozen=True, slots=True)
class Session:
    """One online session of one device; ``None``: the population file's value."""

    device: int
    start_s: float
    end_s: float
    down_mbps: float | None = None
    up_mbps: float | None = None
    latency_ms: float | None = None
    examples_per_s: float | None = None


class _Device:
    """One device's sessions, sorted, with the end of the online stretch each one is part of."""

    __slots__ = ("sessions", "starts", "stretch_end")

    def __init__(self, sessions: list[Session]) -> None:
        self.sessions = sessions
        self.starts = [s.start_s for s in sessions]
        ends = [s.end_s for s in sessions]
        stretch = ends[:]
        for i in range(len(sessions) - 2, -1, -1):
            if sessions[i + 1].start_s <= ends[i]:  # touching: one stretch
                stretch[i] = stretch[i + 1]
        self.stretch_end = stretch

    def index(self, t: float) -> int:
        """The session holding ``t`` (start <= t < end), or -1."""
        i = bisect.bisect_right(self.starts, t) - 1
        return i if i >= 0 and t < self.sessions[i].end_s else -1


class Trace:
    """Sessions by device. ``sha256`` and ``bytes`` describe the file it was read from."""

    def __init__(self, sessions: Iterable[Session], *, sha256: str = "", nbytes: int = 0) -> None:
        by_device: dict[int, list[Session]] = {}
        for s in sessions:
            by_device.setdefault(s.device, []).append(s)
        self._devices = {
            d: _Device(sorted(ss, key=lambda s: s.start_s)) for d, ss in by_device.items()
        }
        self.sha256 = sha256
        self.bytes = nbytes

    @property
    def devices(self) -> int:
        """One more than the highest device number in the trace (0 when empty)."""
        return max(self._devices, default=-1) + 1

    @property
    def sessions(self) -> int:
        return sum(len(d.sessions) for d in self._devices.values())

    def __iter__(self) -> Iterator[Session]:
        for d in sorted(self._devices):
            yield from self._devices[d].sessions

    def next_online(self, device: int, t: float) -> float:
        """The first moment at or after ``t`` the device is online (inf: never again)."""
        dev = self._devices.get(device)
        if dev is None:
            return math.inf
        i = bisect.bisect_right(dev.starts, t) - 1
        if i >= 0 and t < dev.sessions[i].end_s:
            return t
        return dev.starts[i + 1] if i + 1 < len(dev.starts) else math.inf

    def online_until(self, device: int, t: float) -> float:
        """When the online stretch holding ``t`` ends (``t`` itself if offline at ``t``)."""
        dev = self._devices.get(device)
        i = dev.index(t) if dev is not None else -1
        return t if dev is None or i < 0 else dev.stretch_end[i]

    def at(self, device: int, t: float) -> Session | None:
        """The session holding ``t``, else the device's last one before ``t`` (its link and
        speed as last seen), else its first; None for a device without sessions."""
        dev = self._devices.get(device)
        if dev is None:
            return None
        i = bisect.bisect_right(dev.starts, t) - 1
        return dev.sessions[max(i, 0)]

    def peak_online(self) -> int:
        """The most devices online at the same moment."""
        edges = sorted(
            (t, step)
            for dev in self._devices.values()
            for s in dev.sessions
            for t, step in ((s.start_s, 1), (s.end_s, -1))
        )
        peak = now = 0
        for _, step in edges:  # at a tie, -1 sorts first: one ending as another starts
            now += step
            peak = max(peak, now)
        return peak

    def describe(self) -> dict[str, Any]:
        """What result.json records of it."""
        return {"sha256": self.sha256, "bytes": self.bytes, "sessions": self.sessions}


def load_trace(path: str | Path) -> Trace:
    """Read a trace file: ``.json`` as JSON, anything else as CSV. Raises TraceError."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TraceError(f"{where}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TraceError(f"{where}: not UTF-8 text") from None
    records = _json_records(where, text) if where.endswith(".json") else _csv_records(where, text)
    sessions = [_session(label, record) for label, record in records]
    if not sessions:
        raise TraceError(f"{where}: no sessions: a trace needs at least one")
    _check_overlaps(where, sessions)
    return Trace(sessions, sha256=hashlib.sha256(raw).hexdigest(), nbytes=len(raw))


def _csv_records(where: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    lines = [(n, line) for n, line in lines if not line.lstrip().startswith("#")]
    if not lines:
        raise TraceError(f"{where}: empty: a header row and one row per session")
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    header = [h.strip() for h in rows[0]]
    for name in header:
        if name not in _NAMES:
            raise TraceError(
                f"{where}: line {lines[0][0]}: column {name!r} is not a trace field "
                f"(known: {', '.join(_NAMES)})"
            )
    for name, required, _ in FIELDS:
        if required and name not in header:
            raise TraceError(f"{where}: line {lines[0][0]}: the header has no column {name!r}")
    if len(set(header)) != len(header):
        raise TraceError(f"{where}: line {lines[0][0]}: a column is named twice")
    out = []
    for (n, _), row in zip(lines[1:], rows[1:], strict=True):
        if len(row) != len(header):
            raise TraceError(f"{where}: line {n}: {len(row)} cells, the header has {len(header)}")
        record = {k: v.strip() for k, v in zip(header, row, strict=True) if v.strip() != ""}
        out.append((f"{where}: line {n}", record))
    return out


def _json_records(where: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TraceError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), list):
        raise TraceError(f'{where}: a JSON object {{"sessions": [...]}}')
    extra = sorted(set(doc) - {"sessions"})
    if extra:
        raise TraceError(f"{where}: {extra[0]}: not a key of a trace (only sessions)")
    out = []
    for i, record in enumerate(doc["sessions"]):
        label = f"{where}: sessions[{i}]"
        if not isinstance(record, dict):
            raise TraceError(f"{label}: an object of session fields")
        unknown = sorted(set(record) - set(_NAMES))
        if unknown:
            raise TraceError(
                f"{label}: {unknown[0]} is not a trace field (known: {', '.join(_NAMES)})"
            )
        missing = [name for name, required, _ in FIELDS if required and name not in record]
        if missing:
            raise TraceError(f"{label}: {missing[0]} is missing")
        for name, value in record.items():
            if isinstance(value, str):  # numbers are JSON numbers here (strings only in CSV)
                raise TraceError(f"{label}: {name}: a number, not the string {value!r}")
        out.append((label, {k: v for k, v in record.items() if v is not None}))
    return out


def _number(label: str, name: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise TraceError(f"{label}: {name}: a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{label}: {name}: a finite number, not {value!r}")
    return float(value)


def _session(label: str, record: dict[str, Any]) -> Session:
    device_raw = record["device"]
    device = _number(label, "device", device_raw)
    if device < 0 or device != int(device):
        raise TraceError(f"{label}: device: an integer >= 0, not {device_raw!r}")
    start = _number(label, "start_s", record["start_s"])
    end = _number(label, "end_s", record["end_s"])
    if start < 0:
        raise TraceError(f"{label}: start_s: >= 0 (seconds since the run's start), not {start}")
    if end <= start:
        raise TraceError(f"{label}: end_s: after start_s ({start:g}), not {end:g}")
    values: dict[str, float] = {}
    for name in _OPTIONAL:
        if name in record:
            v = _number(label, name, record[name])
            if v <= _LOWER[name]:
                bound = ">= 0" if name == "latency_ms" else "> 0"
                raise TraceError(f"{label}: {name}: {bound}, not {v:g}")
            values[name] = v
    return Session(int(device), start, end, **values)


def _check_overlaps(where: str, sessions: list[Session]) -> None:
    by_device: dict[int, list[Session]] = {}
    for s in sessions:
        by_device.setdefault(s.device, []).append(s)
    for device, ss in sorted(by_device.items()):
        ss.sort(key=lambda s: s.start_s)
        for a, b in itertools.pairwise(ss):
            if b.start_s < a.end_s:
                raise TraceError(
                    f"{where}: device {device}: the session from {b.start_s:g} s starts before "
                    f"the one from {a.start_s:g} s ends ({a.end_s:g} s): sessions must not "
                    "overlap"
                )
