"""Task commands run straight against the SQLite state file (the server may be running:
WAL lets both use it; the server picks new tasks, status changes and config versions up within
seconds). A command that checks and then writes (an edit, a status change) takes SQLite's write
lock first (``BEGIN IMMEDIATE``), so that what it checked is what the coordinator's writer
finds: the two never interleave.

What these functions return is printed as JSON (``dandelion task show|list --json``) and served
by the admin API, so it is made strictly JSON-safe here: every non-finite float (an average
that overflowed, an unbounded ε, an ``inf`` in a task file) becomes ``null``
(:func:`dandelion.api.strict_json.finite`). The operator who runs these commands owns the state
file, so nothing here is withheld below ``monitor_k``; the admin API withholds on top of this.

Wherever ε is shown it comes with its guarantee in words — δ, mechanism, unit of privacy,
neighbouring relation, assumption (:func:`dandelion.privacy.guarantee.guarantee`) — as the
``guarantee`` of a task's ``privacy`` and of each row of the task list.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from .api.strict_json import finite
from .coordinator import TaskConfig, change_status, create_task, edit_task
from .privacy.config import privacy_config
from .privacy.guarantee import guarantee
from .storage import SQLiteStore, StateStore
from .storage.location import is_postgres_url, open_state

__all__ = [
    "change_status_in",
    "create_task_in",
    "describe",
    "describe_task",
    "edit_task_in",
    "history",
    "history_in",
    "list_tasks_in",
    "privacy_summary",
    "task_rows",
]


def create_task_in(db: str, config: TaskConfig) -> dict[str, Any]:
    """Create ``config`` with its initial model in the file ``db``. Raises ValueError if taken."""
    store = open_state(db)
    try:
        if store.get_task(config.name) is not None:
            raise ValueError(f"a task named {config.name!r} exists already")
        create_task(store, config, time.time())
    finally:
        store.close()
    return {"name": config.name, "param_count": config.model.param_count, "status": "active"}


@contextlib.contextmanager
def _writing(db: str) -> Iterator[StateStore]:
    """A store on ``db`` inside one transaction (committed at the end): ``BEGIN IMMEDIATE`` in
    SQLite, so the write lock is taken before anything is read."""
    store = open_state(db)
    if not isinstance(store, SQLiteStore):
        try:
            with store.transaction():
                if is_postgres_url(db):
                    from .storage.postgres import PostgresStore  # psycopg only for a URL

                    assert isinstance(store, PostgresStore)
                    store.lock_tasks()  # the write lock, before anything is read
                yield store
        finally:
            store.close()
        return
    try:
        store.conn.execute("BEGIN IMMEDIATE")  # the write lock, before anything is read
        try:
            yield store
        except BaseException:
            store.conn.execute("ROLLBACK")
            raise
        store.conn.execute("COMMIT")
    finally:
        store.close()


def edit_task_in(
    db: str, name: str, config: TaskConfig, *, reason: str, allow_privacy_change: bool
) -> dict[str, Any]:
    """``dandelion task edit``: the task's next config version. Raises KeyError,
    TaskChangeError."""
    with _writing(db) as store:
        before = store.get_task(name)
        version = edit_task(
            store,
            name,
            config,
            time.time(),
            reason=reason,
            allow_privacy_change=allow_privacy_change,
        )
    changed = before is not None and version != before.config_version
    return {"name": name, "config_version": version, "changed": changed}


def change_status_in(db: str, name: str, action: str, *, reason: str) -> dict[str, Any]:
    """``dandelion task pause|resume|archive``. Raises KeyError, TaskChangeError."""
    with _writing(db) as store:
        status = change_status(store, name, action, time.time(), reason)
    return {"name": name, "status": status}


def history_in(db: str, name: str) -> dict[str, Any] | None:
    store = open_state(db)
    try:
        return history(store, name)
    finally:
        store.close()


def history(store: StateStore, name: str) -> dict[str, Any] | None:
    """A task's life (None if there is none): its log, oldest first — creation, each status
    change, each new config version — and every config version it has had, with the first and
    last round that opened with it (None for none)."""
    record = store.get_task(name)
    if record is None:
        return None
    last = store.last_round_number(name)
    rounds: dict[int, list[int]] = {}
    for r in store.list_rounds(name, last):
        rounds.setdefault(r.config_version, []).append(r.round)
    ran = {version: (min(numbers), max(numbers)) for version, numbers in rounds.items()}
    info = {
        "name": name,
        "status": record.status,
        "config_version": record.config_version,
        "changes": [
            {
                "at": c.at,
                "change": c.change,
                "status": c.status,
                "config_version": c.config_version,
                "reason": c.reason,
            }
            for c in store.task_log(name)
        ],
        "configs": [
            {
                "version": c.version,
                "created_at": c.created_at,
                "reason": c.reason,
                "first_round": ran.get(c.version, (None, None))[0],
                "last_round": ran.get(c.version, (None, None))[1],
                "config": c.config,
            }
            for c in store.list_task_configs(name)
        ],
    }
    made: dict[str, Any] = finite(info)
    return made


def task_rows(store: StateStore, *, archived: bool = True) -> list[dict[str, Any]]:
    """Every task in a line (without the archived ones unless ``archived``): what the admin
    API lists (`task list` shows a subset)."""
    rows = []
    for record in store.list_tasks():
        if record.status == "archived" and not archived:
            continue
        latest = store.latest_model_version(record.name)
        privacy = privacy_summary(store, record.name, record.config, recent=0)
        rows.append(
            {
                "name": record.name,
                "status": record.status,
                "status_reason": record.reason,
                "config_version": record.config_version,
                "objective": record.config.get("objective"),
                "model_version": latest.version if latest else None,
                "rounds_opened": store.last_round_number(record.name),
                "epsilon_spent": (privacy or {}).get("epsilon_spent"),
                "guarantee": (privacy or {}).get("guarantee"),
            }
        )
    made: list[dict[str, Any]] = finite(rows)
    return made


def list_tasks_in(db: str, *, archived: bool = False) -> list[dict[str, Any]]:
    store = open_state(db)
    try:
        return [
            {
                "name": row["name"],
                "status": row["status"],
                "config_version": row["config_version"],
                "objective": row["objective"],
                "model_version": row["model_version"],
                "rounds": row["rounds_opened"],
                "epsilon_spent": row["epsilon_spent"],
                "guarantee": row["guarantee"],
            }
            for row in task_rows(store, archived=archived)
        ]
    finally:
        store.close()


def describe_task(db: str, name: str) -> dict[str, Any] | None:
    store = open_state(db)
    try:
        return describe(store, name)
    finally:
        store.close()


def describe(
    store: StateStore, name: str, rounds_shown: int = 10, evaluations_shown: int = 10
) -> dict[str, Any] | None:
    """A task as `dandelion task show` and the admin API give it (None if there is none):
    with its last ``rounds_shown`` rounds and ``evaluations_shown`` evaluation results."""
    record = store.get_task(name)
    if record is None:
        return None
    latest = store.latest_model_version(name)
    rounds = store.list_rounds(name, rounds_shown)
    info: dict[str, Any] = {
        "name": record.name,
        "status": record.status,
        "status_reason": record.reason,
        "privacy": privacy_summary(store, name, record.config),
        "created_at": record.created_at,
        "config_version": record.config_version,
        "config": record.config,
        "model_version": latest.version if latest else None,
        "model_metrics": latest.metrics if latest else {},
        "rounds_opened": store.last_round_number(name),
        "recent_rounds": [
            {
                "round": r.round,
                "kind": r.kind,
                "status": r.status,
                "goal": r.goal,
                "assigned": r.assigned,
                "reported": r.reported,
                "rejected": r.rejected,
                "dropped": r.dropped,
                "metrics": r.metrics,
                "config_version": r.config_version,
            }
            for r in rounds
        ],
        "evaluations": [
            {
                "round": e.round,
                "model_version": e.model_version,
                "reports": e.reports,
                "withheld": e.withheld,
                "loss": e.loss,
                "accuracy": e.accuracy,
                "count": e.count,
                "loss_sum": e.loss_sum,
                "correct": e.correct,
                "noise_multiplier": e.noise_multiplier,
            }
            for e in (store.list_evaluations(name, evaluations_shown) if evaluations_shown else [])
        ],
    }
    made: dict[str, Any] = finite(info)
    return made


def privacy_summary(
    store: StateStore, name: str, config: dict[str, Any], recent: int = 10
) -> dict[str, Any] | None:
    """The privacy a DP task has spent, from its ledger (None for a task without privacy):
    ε spent against the budget, the guarantee that ε stands for, the parameters charged, the
    next round's clip norm, and the last ``recent`` ledger entries."""
    checked = privacy_config(config)
    if checked is None:
        return None
    privacy = config["privacy"]
    entries = store.list_ledger(name)
    trained = [e for e in entries if e.kind == "train"]
    last = entries[-1] if entries else None
    initial_clip = config["server"].get("clip_norm") or config["hyper"]["clip_norm"]
    goal = config["rounds"]["goal"]
    spent = last.epsilon if last else 0.0
    return {
        "epsilon_spent": spent,
        "guarantee": guarantee(checked, spent),
        "epsilon_budget": privacy["epsilon"],
        "delta": privacy["delta"],
        "accountant": privacy["accountant"],
        "rounds_released": len(trained),
        "evaluations_released": len(entries) - len(trained),
        "noise_multiplier": privacy["noise_multiplier"],
        "sampling_rate": goal / privacy["population"],
        "population": privacy["population"],
        "clipping": privacy["clipping"],
        "clip_norm": trained[-1].next_clip_norm if trained else initial_clip,
        "ledger": [
            {
                "round": e.round,
                "epsilon": e.epsilon,
                "noise_multiplier": e.noise_multiplier,
                "sampling_rate": e.sampling_rate,
                "clip_norm": e.clip_norm,
                "kind": e.kind,
            }
            for e in entries[-recent:]
        ]
        if recent
        else [],
    }
