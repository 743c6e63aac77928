"""The state interface in SQL, once, for every SQL backend (SQLite, PostgreSQL).

Rules of this file: the statements are written with ``?`` placeholders in the SQL that SQLite
and PostgreSQL both speak (``INSERT … ON CONFLICT``, ``length`` of a blob); what differs — the
connection, its transactions, how errors are told, how a time is cut into buckets — is each
backend's subclass (``sqlite.py``, ``postgres.py``). The schema is each backend's migrations'
(``migrations.py``, ``pg_migrations.py``), and a test keeps their tables and columns the same.

Raises :class:`~dandelion.storage.errors.StorageError` when the medium fails and
:class:`~dandelion.storage.errors.ConflictError` for duplicates (the subclass translates).
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

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
from .rows import config_row, evaluation_row, round_row, task_row, version_row

__all__ = ["Cursor", "SQLStore"]


class Cursor(Protocol):
    """What the queries read from a statement: both drivers' cursors are one."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class SQLStore(StateStore):
    """Every query of the state interface; a subclass supplies the connection."""

    #: The bucket number of an event's time ``at`` for ``event_histogram``, truncated toward
    #: zero (``?`` is the bucket width).
    _BUCKET = "CAST(at / ? AS INTEGER)"
    # Row locks that order a cluster's shard checkpoints against the leader's seal. SQLite has
    # none and needs none: its writes take the one database lock.
    _FOR_SHARE = ""
    _FOR_UPDATE = ""

    @abc.abstractmethod
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders); errors translated."""

    @abc.abstractmethod
    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows``; errors translated."""

    # -- tasks -----------------------------------------------------------------------------------

    def create_task(self, record: TaskRecord) -> None:
        if record.status not in TASK_STATUSES:
            raise ValueError(f"task status {record.status!r}")
        r = record
        try:
            with self.transaction():
                self._exec(
                    "INSERT INTO tasks (name, config, status, created_at, reason, config_version) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        r.name,
                        json.dumps(r.config),
                        r.status,
                        r.created_at,
                        r.reason,
                        r.config_version,
                    ),
                )
                self._exec(
                    "INSERT INTO task_configs (task, version, config, created_at, reason) "
                    "VALUES (?, ?, ?, ?, '')",
                    (r.name, r.config_version, json.dumps(r.config), r.created_at),
                )
                self._log(r.name, r.created_at, "created", r.status, r.config_version, r.reason)
        except ConflictError:
            raise ConflictError(f"a task named {record.name!r} exists already") from None

    _T = "name, config, status, created_at, reason, config_version"

    def get_task(self, name: str) -> TaskRecord | None:
        row = self._exec(f"SELECT {self._T} FROM tasks WHERE name = ?", (name,)).fetchone()
        return task_row(row) if row else None

    def list_tasks(self) -> list[TaskRecord]:
        rows = self._exec(f"SELECT {self._T} FROM tasks ORDER BY name")
        return [task_row(r) for r in rows.fetchall()]

    def set_task_status(
        self, name: str, status: str, reason: str = "", *, at: float | None = None
    ) -> None:
        if status not in TASK_STATUSES:
            raise ValueError(f"task status {status!r}")
        when = time.time() if at is None else at
        with self.transaction():
            cur = self._exec(
                "UPDATE tasks SET status = ?, reason = ? WHERE name = ?", (status, reason, name)
            )
            if cur.rowcount != 1:
                raise KeyError(name)
            version = self._exec(
                "SELECT config_version FROM tasks WHERE name = ?", (name,)
            ).fetchone()[0]
            self._log(name, when, "status", status, int(version), reason)

    def set_task_config(
        self, name: str, config: dict[str, Any], *, at: float, reason: str = ""
    ) -> int:
        with self.transaction():
            row = self._exec(
                "SELECT config_version, status FROM tasks WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise KeyError(name)
            version, status = int(row[0]) + 1, str(row[1])
            text = json.dumps(config)
            self._exec(
                "INSERT INTO task_configs (task, version, config, created_at, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, version, text, at, reason),
            )
            self._exec(
                "UPDATE tasks SET config = ?, config_version = ? WHERE name = ?",
                (text, version, name),
            )
            self._log(name, at, "config", status, version, reason)
        return version

    _C = "task, version, config, created_at, reason"

    def list_task_configs(self, name: str) -> list[TaskConfigVersion]:
        rows = self._exec(
            f"SELECT {self._C} FROM task_configs WHERE task = ? ORDER BY version", (name,)
        ).fetchall()
        return [config_row(r) for r in rows]

    def get_task_config(self, name: str, version: int) -> TaskConfigVersion | None:
        row = self._exec(
            f"SELECT {self._C} FROM task_configs WHERE task = ? AND version = ?", (name, version)
        ).fetchone()
        return config_row(row) if row else None

    def task_log(self, name: str) -> list[TaskChange]:
        rows = self._exec(
            "SELECT task, at, change, status, config_version, reason FROM task_log "
            "WHERE task = ? ORDER BY id",
            (name,),
        ).fetchall()
        return [TaskChange(r[0], r[1], r[2], r[3], int(r[4]), r[5] or "") for r in rows]

    def _log(
        self, name: str, at: float, change: str, status: str, version: int, reason: str
    ) -> None:
        self._exec(
            "INSERT INTO task_log (task, at, change, status, config_version, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, at, change, status, version, reason),
        )

    # -- model versions --------------------------------------------------------------------------

    def save_model_version(self, version: ModelVersion) -> None:
        try:
            self._exec(
                "INSERT INTO model_versions (task, version, round, params, optimizer_state, "
                "created_at, metrics) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    version.task,
                    version.version,
                    version.round,
                    version.params,
                    version.optimizer_state,
                    version.created_at,
                    json.dumps(version.metrics),
                ),
            )
        except ConflictError:
            raise ConflictError(
                f"model version {version.version} of {version.task!r} exists already"
            ) from None

    _MV = "task, version, round, params, optimizer_state, created_at, metrics"

    def latest_model_version(self, task: str) -> ModelVersion | None:
        row = self._exec(
            f"SELECT {self._MV} FROM model_versions WHERE task = ? ORDER BY version DESC LIMIT 1",
            (task,),
        ).fetchone()
        return version_row(row) if row else None

    def get_model_version(self, task: str, version: int) -> ModelVersion | None:
        row = self._exec(
            f"SELECT {self._MV} FROM model_versions WHERE task = ? AND version = ?",
            (task, version),
        ).fetchone()
        return version_row(row) if row else None

    def list_model_versions(self, task: str) -> list[ModelVersionInfo]:
        rows = self._exec(
            "SELECT task, version, round, created_at, metrics, length(params) "
            "FROM model_versions WHERE task = ? ORDER BY version",
            (task,),
        ).fetchall()
        return [ModelVersionInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    # -- rounds ----------------------------------------------------------------------------------

    _R = (
        "task, round, model_version, status, opened_at, closed_at, goal, assigned, reported, "
        "rejected, dropped, metrics, config_version, kind"
    )

    def open_round(self, record: RoundRecord) -> None:
        if record.status not in ROUND_STATUSES:
            raise ValueError(f"round status {record.status!r}")
        if record.kind not in ROUND_KINDS:
            raise ValueError(f"round kind {record.kind!r}")
        self._exec(
            f"INSERT INTO rounds ({self._R}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.task,
                record.round,
                record.model_version,
                record.status,
                record.opened_at,
                record.closed_at,
                record.goal,
                record.assigned,
                record.reported,
                record.rejected,
                record.dropped,
                json.dumps(record.metrics),
                record.config_version,
                record.kind,
            ),
        )

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
        cur = self._exec(
            "UPDATE rounds SET status = ?, closed_at = ?, assigned = ?, reported = ?, "
            "rejected = ?, dropped = ?, metrics = ? WHERE task = ? AND round = ?",
            (
                status,
                closed_at,
                assigned,
                reported,
                rejected,
                dropped,
                json.dumps(metrics),
                task,
                round,
            ),
        )
        if cur.rowcount != 1:
            raise KeyError(f"no round {round} of task {task!r}")
        for table in ("open_rounds", "shard_checkpoints", "sealed_rounds"):
            self._exec(f"DELETE FROM {table} WHERE task = ? AND round = ?", (task, round))

    def save_round_checkpoint(self, checkpoint: RoundCheckpoint) -> None:
        c = checkpoint
        row = self._exec(
            "SELECT status FROM rounds WHERE task = ? AND round = ?", (c.task, c.round)
        ).fetchone()
        if row is None or row[0] != "open":
            raise KeyError(f"round {c.round} of task {c.task!r} is not open")
        self._exec(
            "INSERT INTO open_rounds (task, round, secret, aggregate, rejected, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task, round) DO UPDATE SET "
            "secret = excluded.secret, aggregate = excluded.aggregate, "
            "rejected = excluded.rejected, updated_at = excluded.updated_at",
            (c.task, c.round, c.secret, c.aggregate, c.rejected, c.updated_at),
        )

    def get_round_checkpoint(self, task: str, round: int) -> RoundCheckpoint | None:
        row = self._exec(
            "SELECT task, round, secret, aggregate, rejected, updated_at FROM open_rounds "
            "WHERE task = ? AND round = ?",
            (task, round),
        ).fetchone()
        if row is None:
            return None
        blob = bytes(row[3]) if row[3] is not None else None
        return RoundCheckpoint(row[0], int(row[1]), row[2], blob, int(row[4]), float(row[5]))

    def _open_status(self, task: str, round: int, lock: str) -> bool:
        """Whether the round is open and unsealed, its row locked as ``lock`` says."""
        row = self._exec(
            f"SELECT status FROM rounds WHERE task = ? AND round = ?{lock}", (task, round)
        ).fetchone()
        if row is None or row[0] != "open":
            raise KeyError(f"round {round} of task {task!r} is not open")
        sealed = self._exec(
            "SELECT 1 FROM sealed_rounds WHERE task = ? AND round = ?", (task, round)
        ).fetchone()
        return sealed is None

    def save_shard_checkpoint(self, checkpoint: ShardCheckpoint) -> None:
        c = checkpoint
        with self.transaction():
            # FOR SHARE: shards checkpoint side by side; the leader's seal (FOR UPDATE) waits
            # for those under way, and the ones after it find the round sealed.
            if not self._open_status(c.task, c.round, self._FOR_SHARE):
                raise KeyError(f"round {c.round} of task {c.task!r} is sealed: it is closing")
            self._exec(
                "INSERT INTO shard_checkpoints (task, round, shard, aggregate, reports, "
                "rejected, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task, round, "
                "shard) DO UPDATE SET aggregate = excluded.aggregate, reports = "
                "excluded.reports, rejected = excluded.rejected, updated_at = excluded.updated_at",
                (c.task, c.round, c.shard, c.aggregate, c.reports, c.rejected, c.updated_at),
            )

    def seal_round(self, task: str, round: int) -> list[ShardCheckpoint]:
        with self.transaction():
            if self._open_status(task, round, self._FOR_UPDATE):
                self._exec(
                    "INSERT INTO sealed_rounds (task, round, sealed_at) VALUES (?, ?, ?)",
                    (task, round, time.time()),
                )
            return self.list_shard_checkpoints(task, round)

    def list_shard_checkpoints(self, task: str, round: int) -> list[ShardCheckpoint]:
        rows = self._exec(
            "SELECT task, round, shard, aggregate, reports, rejected, updated_at "
            "FROM shard_checkpoints WHERE task = ? AND round = ? ORDER BY shard",
            (task, round),
        ).fetchall()
        return [
            ShardCheckpoint(r[0], int(r[1]), r[2], bytes(r[3]), int(r[4]), int(r[5]), float(r[6]))
            for r in rows
        ]

    def round_participants(self, task: str, round: int) -> tuple[set[str], set[str]]:
        rows = self._exec(
            "SELECT DISTINCT worker_id, event FROM events WHERE task = ? AND round = ? "
            "AND event IN ('selected', 'reported')",
            (task, round),
        ).fetchall()
        selected = {w for w, e in rows if e == "selected"}
        reported = {w for w, e in rows if e == "reported"}
        return selected, reported

    def fence(self, task: str, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"a fencing epoch is a positive integer, not {epoch!r}")
        # One statement, so two leaders racing serialise on the row: the later one reads the
        # epoch the earlier one wrote (in PostgreSQL too, under READ COMMITTED).
        cur = self._exec(
            "INSERT INTO leader_epochs (task, epoch) VALUES (?, ?) ON CONFLICT (task) "
            "DO UPDATE SET epoch = excluded.epoch WHERE leader_epochs.epoch <= excluded.epoch",
            (task, epoch),
        )
        if cur.rowcount != 1:
            raise FencedError(
                f"task {task!r}: epoch {epoch} is fenced off by epoch {self.leader_epoch(task)}"
            )

    def leader_epoch(self, task: str) -> int | None:
        row = self._exec("SELECT epoch FROM leader_epochs WHERE task = ?", (task,)).fetchone()
        return None if row is None else int(row[0])

    def task_secret(self, task: str, name: str, make: str) -> str:
        self._exec(
            "INSERT INTO task_secrets (task, name, secret) VALUES (?, ?, ?) "
            "ON CONFLICT (task, name) DO NOTHING",
            (task, name, make),
        )
        row = self._exec(
            "SELECT secret FROM task_secrets WHERE task = ? AND name = ?", (task, name)
        ).fetchone()
        return str(row[0])

    def get_round(self, task: str, round: int) -> RoundRecord | None:
        row = self._exec(
            f"SELECT {self._R} FROM rounds WHERE task = ? AND round = ?", (task, round)
        ).fetchone()
        return round_row(row) if row else None

    def list_rounds(
        self, task: str, limit: int = 100, kind: str | None = None
    ) -> list[RoundRecord]:
        where, params = (
            ("", (task, limit)) if kind is None else (" AND kind = ?", (task, kind, limit))
        )
        rows = self._exec(
            f"SELECT {self._R} FROM rounds WHERE task = ?{where} ORDER BY round DESC LIMIT ?",
            params,
        ).fetchall()
        return [round_row(r) for r in rows]

    def last_round_number(self, task: str) -> int:
        row = self._exec("SELECT max(round) FROM rounds WHERE task = ?", (task,)).fetchone()
        return int(row[0] or 0)

    def mark_open_rounds_interrupted(self, closed_at: float) -> int:
        cur = self._exec(
            "UPDATE rounds SET status = 'interrupted', closed_at = ? WHERE status = 'open'",
            (closed_at,),
        )
        return cur.rowcount

    # -- evaluation results ----------------------------------------------------------------------

    _E = (
        "task, round, model_version, reports, withheld, count, loss_sum, correct, loss, "
        "accuracy, noise_multiplier, opened_at, closed_at"
    )

    def save_evaluation(self, record: EvaluationRecord) -> None:
        row = self._exec(
            "SELECT kind FROM rounds WHERE task = ? AND round = ?", (record.task, record.round)
        ).fetchone()
        if row is None or row[0] != "evaluate":
            raise KeyError(f"round {record.round} of {record.task!r} is not an evaluation round")
        r = record
        try:
            self._exec(
                f"INSERT INTO evaluations ({self._E}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.task,
                    r.round,
                    r.model_version,
                    r.reports,
                    int(r.withheld),
                    r.count,
                    r.loss_sum,
                    r.correct,
                    r.loss,
                    r.accuracy,
                    r.noise_multiplier,
                    r.opened_at,
                    r.closed_at,
                ),
            )
        except ConflictError:
            raise ConflictError(
                f"the evaluation of round {r.round} of {r.task!r} is stored already"
            ) from None

    def list_evaluations(self, task: str, limit: int = 100) -> list[EvaluationRecord]:
        rows = self._exec(
            f"SELECT {self._E} FROM evaluations WHERE task = ? ORDER BY round DESC LIMIT ?",
            (task, limit),
        ).fetchall()
        return [evaluation_row(r) for r in rows]

    # -- privacy ledger --------------------------------------------------------------------------

    _L = (
        "task, round, noise_multiplier, sampling_rate, epsilon, delta, accountant, clip_norm, "
        "next_clip_norm, created_at, kind"
    )

    def add_ledger_entry(self, entry: LedgerEntry) -> None:
        if entry.kind not in ROUND_KINDS:
            raise ValueError(f"ledger entry kind {entry.kind!r}")
        try:
            self._exec(
                f"INSERT INTO privacy_ledger ({self._L}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.task,
                    entry.round,
                    entry.noise_multiplier,
                    entry.sampling_rate,
                    entry.epsilon,
                    entry.delta,
                    entry.accountant,
                    entry.clip_norm,
                    entry.next_clip_norm,
                    entry.created_at,
                    entry.kind,
                ),
            )
        except ConflictError:
            raise ConflictError(
                f"round {entry.round} of {entry.task!r} is in the privacy ledger already"
            ) from None

    def list_ledger(self, task: str) -> list[LedgerEntry]:
        rows = self._exec(
            f"SELECT {self._L} FROM privacy_ledger WHERE task = ? ORDER BY round", (task,)
        ).fetchall()
        return [LedgerEntry(*r) for r in rows]

    # -- participation and consent ---------------------------------------------------------------

    def record_events(self, events: Sequence[ParticipationEvent]) -> None:
        if not events:
            return
        # The hot path (one call per acknowledged update): one executemany per batch.
        self._exec_many(
            "INSERT INTO events (worker_id, task, round, event, at) VALUES (?, ?, ?, ?, ?)",
            [(e.worker_id, e.task, e.round, e.event, e.at) for e in events],
        )

    def count_events(
        self, *, task: str | None = None, event: str | None = None, since: float | None = None
    ) -> int:
        where, params = _event_filter(task, event, since)
        row = self._exec(f"SELECT count(*) FROM events{where}", params).fetchone()
        return int(row[0])

    def event_counts(self, task: str | None = None) -> dict[str, int]:
        where, params = _event_filter(task, None, None)
        rows = self._exec(f"SELECT event, count(*) FROM events{where} GROUP BY event", params)
        return {event: int(n) for event, n in rows.fetchall()}

    def iter_events(self, task: str | None = None) -> Iterator[ParticipationEvent]:
        where, params = _event_filter(task, None, None)
        rows = self._exec(
            f"SELECT worker_id, task, round, event, at FROM events{where} ORDER BY id", params
        )
        for r in rows:
            yield ParticipationEvent(*r)

    def set_consent(self, worker_id: str, state: str, at: float) -> None:
        self._exec(
            "INSERT INTO consent (worker_id, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(worker_id) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
            (worker_id, state, at),
        )

    def get_consent(self, worker_id: str) -> str | None:
        row = self._exec("SELECT state FROM consent WHERE worker_id = ?", (worker_id,)).fetchone()
        return str(row[0]) if row else None

    # -- monitoring ------------------------------------------------------------------------------

    def consent_counts(self) -> dict[str, int]:
        rows = self._exec("SELECT state, count(*) FROM consent GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}

    def event_histogram(
        self, *, since: float, bucket_s: float, task: str | None = None
    ) -> list[tuple[float, str, int]]:
        if bucket_s <= 0:
            raise ValueError("bucket_s must be positive")
        where, params = _event_filter(task, None, since)
        rows = self._exec(
            f"SELECT {self._BUCKET} AS b, event, count(*) FROM events{where} "
            "GROUP BY b, event ORDER BY b, event",
            [bucket_s, *params],
        ).fetchall()
        return [(b * bucket_s, event, int(n)) for b, event, n in rows]

    # -- admin tokens ----------------------------------------------------------------------------

    def add_admin_token(self, name: str, token_hash: str, at: float) -> None:
        try:
            self._exec(
                "INSERT INTO admin_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
                (name, token_hash, at),
            )
        except ConflictError:
            raise ConflictError(f"an admin token named {name!r} exists already") from None

    def admin_token_name(self, token_hash: str) -> str | None:
        row = self._exec(
            "SELECT name FROM admin_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return str(row[0]) if row else None

    def list_admin_tokens(self) -> list[tuple[str, float]]:
        rows = self._exec("SELECT name, created_at FROM admin_tokens ORDER BY name").fetchall()
        return [(str(n), float(t)) for n, t in rows]

    def revoke_admin_token(self, name: str) -> bool:
        return self._exec("DELETE FROM admin_tokens WHERE name = ?", (name,)).rowcount == 1


def _event_filter(
    task: str | None, event: str | None, since: float | None
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for clause, value in (("task = ?", task), ("event = ?", event), ("at >= ?", since)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
