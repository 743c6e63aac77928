"""Task commands run straight against the SQLite state file (the server may be running:
WAL lets both use it; the server picks new tasks and status changes up within seconds).

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

import time
from typing import Any

from .api.strict_json import finite
from .coordinator import TaskConfig, create_task
from .privacy.config import privacy_config
from .privacy.guarantee import guarantee
from .storage import SQLiteStore, StateStore

__all__ = [
    "create_task_in",
    "describe",
    "describe_task",
    "list_tasks_in",
    "privacy_summary",
    "task_rows",
]


def create_task_in(db: str, config: TaskConfig) -> dict[str, Any]:
    """Create ``config`` with its initial model in the file ``db``. Raises ValueError if taken."""
    store = SQLiteStore(db)
    try:
        if store.get_task(config.name) is not None:
            raise ValueError(f"a task named {config.name!r} exists already")
        create_task(store, config, time.time())
    finally:
        store.close()
    return {"name": config.name, "param_count": config.model.param_count, "status": "active"}


def task_rows(store: StateStore) -> list[dict[str, Any]]:
    """Every task in a line: what the admin API lists (`task list` shows a subset)."""
    rows = []
    for record in store.list_tasks():
        latest = store.latest_model_version(record.name)
        privacy = privacy_summary(store, record.name, record.config, recent=0)
        rows.append(
            {
                "name": record.name,
                "status": record.status,
                "status_reason": record.reason,
                "objective": record.config.get("objective"),
                "model_version": latest.version if latest else None,
                "rounds_opened": store.last_round_number(record.name),
                "epsilon_spent": (privacy or {}).get("epsilon_spent"),
                "guarantee": (privacy or {}).get("guarantee"),
            }
        )
    made: list[dict[str, Any]] = finite(rows)
    return made


def list_tasks_in(db: str) -> list[dict[str, Any]]:
    store = SQLiteStore(db)
    try:
        return [
            {
                "name": row["name"],
                "status": row["status"],
                "objective": row["objective"],
                "model_version": row["model_version"],
                "rounds": row["rounds_opened"],
                "epsilon_spent": row["epsilon_spent"],
                "guarantee": row["guarantee"],
            }
            for row in task_rows(store)
        ]
    finally:
        store.close()


def describe_task(db: str, name: str) -> dict[str, Any] | None:
    store = SQLiteStore(db)
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
