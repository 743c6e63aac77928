"""An in-memory backend with the same contract as SQLite: tests and fast emulation.

Thread-safe (one lock); ``transaction()`` snapshots the state and restores it on error, so the
all-or-nothing promises hold here too.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import ConflictError, FencedError
from .interface import StateStore
from .records import (
    ROUND_KINDS,
    ROUND_STATUSES,
    TASK_STATUSES,
    EvaluationRecord,
    LedgerEntry,
    ModelVersion,
    ModelVersionInfo,
    ParticipationEvent,
    RoundCheckpoint,
    RoundRecord,
    ShardCheckpoint,
    TaskChange,
    TaskConfigVersion,
    TaskRecord,
)

__all__ = ["MemoryStore"]


class MemoryStore(StateStore):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskRecord] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._rounds: dict[tuple[str, int], RoundRecord] = {}
        self._events: list[ParticipationEvent] = []
        self._consent: dict[str, tuple[str, float]] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._ledger: dict[tuple[str, int], LedgerEntry] = {}
        self._checkpoints: dict[tuple[str, int], RoundCheckpoint] = {}
        self._secrets: dict[tuple[str, str], str] = {}
        self._configs: dict[tuple[str, int], TaskConfigVersion] = {}
        self._log: list[TaskChange] = []
        self._evaluations: dict[tuple[str, int], EvaluationRecord] = {}
        self._epochs: dict[str, int] = {}
        self._shards: dict[tuple[str, int, str], ShardCheckpoint] = {}
        self._sealed: set[tuple[str, int]] = set()

    _STATE: tuple[str, ...] = (
        "_tasks",
        "_versions",
        "_rounds",
        "_events",
        "_consent",
        "_ledger",
        "_tokens",
        "_checkpoints",
        "_secrets",
        "_configs",
        "_log",
        "_evaluations",
        "_epochs",
        "_shards",
        "_sealed",
    )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            saved = {name: copy.copy(getattr(self, name)) for name in self._STATE}
            try:
                yield
            except BaseException:
                for name, value in saved.items():
                    setattr(self, name, value)
                raise

    def create_task(self, record: TaskRecord) -> None:
        if record.status not in TASK_STATUSES:
            raise ValueError(f"task status {record.status!r}")
        r = copy.deepcopy(record)
        with self._lock:
            if r.name in self._tasks:
                raise ConflictError(f"a task named {r.name!r} exists already")
            self._tasks[r.name] = r
            self._configs[r.name, r.config_version] = TaskConfigVersion(
                r.name, r.config_version, copy.deepcopy(r.config), r.created_at
            )
            self._log.append(
                TaskChange(r.name, r.created_at, "created", r.status, r.config_version, r.reason)
            )

    def get_task(self, name: str) -> TaskRecord | None:
        return self._tasks.get(name)

    def list_tasks(self) -> list[TaskRecord]:
        with self._lock:
            return [self._tasks[k] for k in sorted(self._tasks)]

    def set_task_status(
        self, name: str, status: str, reason: str = "", *, at: float | None = None
    ) -> None:
        if status not in TASK_STATUSES:
            raise ValueError(f"task status {status!r}")
        when = time.time() if at is None else at
        with self._lock:
            old = self._tasks[name]
            self._tasks[name] = dataclasses.replace(old, status=status, reason=reason)
            self._log.append(TaskChange(name, when, "status", status, old.config_version, reason))

    def set_task_config(
        self, name: str, config: dict[str, Any], *, at: float, reason: str = ""
    ) -> int:
        with self._lock:
            old = self._tasks[name]
            version = old.config_version + 1
            kept = copy.deepcopy(config)
            self._configs[name, version] = TaskConfigVersion(name, version, kept, at, reason)
            self._tasks[name] = dataclasses.replace(
                old, config=copy.deepcopy(config), config_version=version
            )
            self._log.append(TaskChange(name, at, "config", old.status, version, reason))
        return version

    def list_task_configs(self, name: str) -> list[TaskConfigVersion]:
        with self._lock:
            return sorted(
                (c for (t, _), c in self._configs.items() if t == name), key=lambda c: c.version
            )

    def get_task_config(self, name: str, version: int) -> TaskConfigVersion | None:
        return self._configs.get((name, version))

    def task_log(self, name: str) -> list[TaskChange]:
        with self._lock:
            return [c for c in self._log if c.task == name]

    def save_model_version(self, version: ModelVersion) -> None:
        key = (version.task, version.version)
        with self._lock:
            if version.task not in self._tasks:
                raise ConflictError(f"no task {version.task!r}")
            if key in self._versions:
                raise ConflictError(f"model version {version.version} of {version.task!r} exists")
            self._versions[key] = version

    def latest_model_version(self, task: str) -> ModelVersion | None:
        with self._lock:
            mine = [v for (t, _), v in self._versions.items() if t == task]
        return max(mine, key=lambda v: v.version) if mine else None

    def get_model_version(self, task: str, version: int) -> ModelVersion | None:
        return self._versions.get((task, version))

    def list_model_versions(self, task: str) -> list[ModelVersionInfo]:
        with self._lock:
            mine = sorted(
                (v for (t, _), v in self._versions.items() if t == task), key=lambda v: v.version
            )
        return [
            ModelVersionInfo(v.task, v.version, v.round, v.created_at, v.metrics, len(v.params))
            for v in mine
        ]

    def open_round(self, record: RoundRecord) -> None:
        if record.status not in ROUND_STATUSES:
            raise ValueError(f"round status {record.status!r}")
        if record.kind not in ROUND_KINDS:
            raise ValueError(f"round kind {record.kind!r}")
        with self._lock:
            key = (record.task, record.round)
            if key in self._rounds:
                raise ConflictError(f"round {record.round} of {record.task!r} exists")
            if record.task not in self._tasks:
                raise ConflictError(f"no task {record.task!r}")
            self._rounds[key] = record

    def close_round(
        self,
        *,
        task: str,
        round: int,
        status: str,
        closed_at: float,
        assigned: int,
        reported: int,
        rejected: int,
        dropped: int,
        metrics: dict[str, Any],
    ) -> None:
        if status not in ROUND_STATUSES - {"open"}:
            raise ValueError(f"a round cannot close as {status!r}")
        with self._lock:
            old = self._rounds.get((task, round))
            if old is None:
                raise KeyError(f"no round {round} of task {task!r}")
            self._rounds[(task, round)] = dataclasses.replace(
                old,
                status=status,
                closed_at=closed_at,
                assigned=assigned,
                reported=reported,
                rejected=rejected,
                dropped=dropped,
                metrics=dict(metrics),
            )
            self._checkpoints.pop((task, round), None)
            for key in [k for k in self._shards if k[:2] == (task, round)]:
                del self._shards[key]
            self._sealed.discard((task, round))

    def save_round_checkpoint(self, checkpoint: RoundCheckpoint) -> None:
        key = (checkpoint.task, checkpoint.round)
        with self._lock:
            record = self._rounds.get(key)
            if record is None or record.status != "open":
                raise KeyError(f"round {checkpoint.round} of task {checkpoint.task!r} is not open")
            self._checkpoints[key] = checkpoint

    def get_round_checkpoint(self, task: str, round: int) -> RoundCheckpoint | None:
        return self._checkpoints.get((task, round))

    def _check_open(self, task: str, round: int) -> None:
        record = self._rounds.get((task, round))
        if record is None or record.status != "open":
            raise KeyError(f"round {round} of task {task!r} is not open")

    def save_shard_checkpoint(self, checkpoint: ShardCheckpoint) -> None:
        c = checkpoint
        with self._lock:
            self._check_open(c.task, c.round)
            if (c.task, c.round) in self._sealed:
                raise KeyError(f"round {c.round} of task {c.task!r} is sealed: it is closing")
            self._shards[(c.task, c.round, c.shard)] = c

    def seal_round(self, task: str, round: int) -> list[ShardCheckpoint]:
        with self._lock:
            self._check_open(task, round)
            self._sealed.add((task, round))
            return self.list_shard_checkpoints(task, round)

    def list_shard_checkpoints(self, task: str, round: int) -> list[ShardCheckpoint]:
        with self._lock:
            found = [c for k, c in self._shards.items() if k[:2] == (task, round)]
        return sorted(found, key=lambda c: c.shard)

    def round_participants(self, task: str, round: int) -> tuple[set[str], set[str]]:
        selected: set[str] = set()
        reported: set[str] = set()
        for e in self._filter(task, None, None):
            if e.round == round:
                if e.event == "selected":
                    selected.add(e.worker_id)
                elif e.event == "reported":
                    reported.add(e.worker_id)
        return selected, reported

    def fence(self, task: str, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"a fencing epoch is a positive integer, not {epoch!r}")
        with self._lock:
            if task not in self._tasks:
                raise ConflictError(f"no task {task!r}")
            last = self._epochs.get(task, 0)
            if epoch < last:
                raise FencedError(f"task {task!r}: epoch {epoch} is fenced off by epoch {last}")
            self._epochs[task] = epoch

    def leader_epoch(self, task: str) -> int | None:
        return self._epochs.get(task)

    def task_secret(self, task: str, name: str, make: str) -> str:
        with self._lock:
            if task not in self._tasks:
                raise ConflictError(f"no task {task!r}")
            return self._secrets.setdefault((task, name), make)

    def get_round(self, task: str, round: int) -> RoundRecord | None:
        return self._rounds.get((task, round))

    def list_rounds(
        self, task: str, limit: int = 100, kind: str | None = None
    ) -> list[RoundRecord]:
        with self._lock:
            mine = [
                r
                for (t, _), r in self._rounds.items()
                if t == task and (kind is None or r.kind == kind)
            ]
        return sorted(mine, key=lambda r: -r.round)[:limit]

    def last_round_number(self, task: str) -> int:
        with self._lock:
            return max((n for (t, n) in self._rounds if t == task), default=0)

    def mark_open_rounds_interrupted(self, closed_at: float) -> int:
        with self._lock:
            open_ = [k for k, r in self._rounds.items() if r.status == "open"]
            for key in open_:
                self._rounds[key] = dataclasses.replace(
                    self._rounds[key], status="interrupted", closed_at=closed_at
                )
            return len(open_)

    def save_evaluation(self, record: EvaluationRecord) -> None:
        key = (record.task, record.round)
        with self._lock:
            made = self._rounds.get(key)
            if made is None or made.kind != "evaluate":
                raise KeyError(
                    f"round {record.round} of {record.task!r} is not an evaluation round"
                )
            if key in self._evaluations:
                raise ConflictError(
                    f"the evaluation of round {record.round} of {record.task!r} is stored already"
                )
            self._evaluations[key] = record

    def list_evaluations(self, task: str, limit: int = 100) -> list[EvaluationRecord]:
        with self._lock:
            mine = [e for (t, _), e in self._evaluations.items() if t == task]
        return sorted(mine, key=lambda e: -e.round)[:limit]

    def add_ledger_entry(self, entry: LedgerEntry) -> None:
        if entry.kind not in ROUND_KINDS:
            raise ValueError(f"ledger entry kind {entry.kind!r}")
        key = (entry.task, entry.round)
        with self._lock:
            if entry.task not in self._tasks:
                raise ConflictError(f"no task {entry.task!r}")
            if key in self._ledger:
                raise ConflictError(
                    f"round {entry.round} of {entry.task!r} is in the privacy ledger already"
                )
            self._ledger[key] = entry

    def list_ledger(self, task: str) -> list[LedgerEntry]:
        with self._lock:
            mine = [e for (t, _), e in self._ledger.items() if t == task]
        return sorted(mine, key=lambda e: e.round)

    def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        with self._lock:
            self._events.extend(events)

    def count_events(
        self, *, task: str | None = None, event: str | None = None, since: float | None = None
    ) -> int:
        return sum(1 for _ in self._filter(task, event, since))

    def event_counts(self, task: str | None = None) -> dict[str, int]:
        return dict(Counter(e.event for e in self._filter(task, None, None)))

    def iter_events(self, task: str | None = None) -> Iterator[ParticipationEvent]:
        return iter(list(self._filter(task, None, None)))

    def _filter(
        self, task: str | None, event: str | None, since: float | None
    ) -> Iterator[ParticipationEvent]:
        with self._lock:
            events = list(self._events)
        for e in events:
            if task is not None and e.task != task:
                continue
            if event is not None and e.event != event:
                continue
            if since is not None and e.at < since:
                continue
            yield e

    def set_consent(self, worker_id: str, state: str, at: float) -> None:
        with self._lock:
            self._consent[worker_id] = (state, at)

    def get_consent(self, worker_id: str) -> str | None:
        entry = self._consent.get(worker_id)
        return entry[0] if entry else None

    def consent_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(state for state, _ in self._consent.values()))

    def event_histogram(
        self, *, since: float, bucket_s: float, task: str | None = None
    ) -> list[tuple[float, str, int]]:
        if bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        counts = Counter((int(e.at / bucket_s), e.event) for e in self._filter(task, None, since))
        return [(b * bucket_s, event, n) for (b, event), n in sorted(counts.items())]

    def add_admin_token(self, name: str, token_hash: str, at: float) -> None:
        with self._lock:
            if name in self._tokens or any(h == token_hash for h, _ in self._tokens.values()):
                raise ConflictError(f"an admin token named {name!r} exists already")
            self._tokens[name] = (token_hash, at)

    def admin_token_name(self, token_hash: str) -> str | None:
        with self._lock:
            return next((n for n, (h, _) in self._tokens.items() if h == token_hash), None)

    def list_admin_tokens(self) -> list[tuple[str, float]]:
        with self._lock:
            return sorted((n, at) for n, (_, at) in self._tokens.items())

    def revoke_admin_token(self, name: str) -> bool:
        with self._lock:
            return self._tokens.pop(name, None) is not None
