"""Schema changes, in order, as sqlite-utils migrations. Never ALTER a table anywhere else.

To change the schema, add a function decorated with ``@MIGRATIONS()`` at the end; it runs once
per database, inside a transaction, and is recorded in ``_sqlite_migrations``.
"""

from __future__ import annotations

import time

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

__all__ = ["MIGRATIONS"]

MIGRATIONS = Migrations("dandelion")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    db["tasks"].create(  # type: ignore[union-attr]
        {"name": str, "config": str, "status": str, "created_at": float}, pk="name"
    )
    db["model_versions"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "version": int,
            "round": int,
            "params": bytes,
            "optimizer_state": bytes,
            "created_at": float,
            "metrics": str,
        },
        pk=("task", "version"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["rounds"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "model_version": int,
            "status": str,
            "opened_at": float,
            "closed_at": float,
            "goal": int,
            "assigned": int,
            "reported": int,
            "rejected": int,
            "dropped": int,
            "metrics": str,
        },
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["rounds"].create_index(["status"])  # type: ignore[union-attr]
    # Participation events: a pseudonymous id, what happened, when. No address, no content.
    db["events"].create(  # type: ignore[union-attr]
        {"id": int, "worker_id": str, "task": str, "round": int, "event": str, "at": float},
        pk="id",
    )
    db["events"].create_index(["task", "event"])  # type: ignore[union-attr]
    db["events"].create_index(["at"])  # type: ignore[union-attr]
    db["consent"].create(  # type: ignore[union-attr]
        {"worker_id": str, "state": str, "updated_at": float}, pk="worker_id"
    )


@MIGRATIONS()
def m002_privacy_ledger(db: Database) -> None:
    # Why a task has its status (e.g. the privacy budget that stopped it), and the ledger of
    # every DP round it released: one row per round, written with the round's model version.
    db["tasks"].add_column("reason", str, not_null_default="")  # type: ignore[union-attr]
    db["privacy_ledger"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "noise_multiplier": float,
            "sampling_rate": float,
            "epsilon": float,
            "delta": float,
            "accountant": str,
            "clip_norm": float,
            "next_clip_norm": float,
            "created_at": float,
        },
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )


@MIGRATIONS()
def m003_admin_tokens(db: Database) -> None:
    # Bearer tokens of the admin API and dashboard: a name and the token's SHA-256, never the
    # token itself (it is shown once, when made).
    db["admin_tokens"].create(  # type: ignore[union-attr]
        {"name": str, "token_hash": str, "created_at": float}, pk="name"
    )
    db["admin_tokens"].create_index(["token_hash"], unique=True)  # type: ignore[union-attr]


@MIGRATIONS()
def m004_durable_rounds(db: Database) -> None:
    # The live state of open rounds: the assignment key and the checkpointed aggregate (a sum of
    # at least k updates). A row lives only while its round is open: closing deletes it in the
    # transaction that commits the round's model.
    db["open_rounds"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "secret": str,
            "aggregate": bytes,
            "rejected": int,
            "updated_at": float,
        },
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )
    # Resuming a round reads who was selected and who reported in it.
    db["events"].create_index(["task", "round", "event"])  # type: ignore[union-attr]


@MIGRATIONS()
def m005_task_secrets(db: Database) -> None:
    # Keys a task needs for its whole life and that only the coordinator may know: the key of
    # a DP-FTRL task's tree noise (the noise is recomputed from it after a restart).
    db["task_secrets"].create(  # type: ignore[union-attr]
        {"task": str, "name": str, "secret": str},
        pk=("task", "name"),
        foreign_keys=[("task", "tasks", "name")],
    )


@MIGRATIONS()
def m006_task_lifecycle(db: Database) -> None:
    # A task's configuration has versions: every one is kept in ``task_configs`` (version 1 is
    # the file it was created from); ``tasks.config`` is the current one, the one the next
    # round opens with, and each round records the version it opened with. ``task_log`` holds
    # one row per change of a task's life: created, a new status, a new config version.
    db["tasks"].add_column("config_version", int, not_null_default=1)  # type: ignore[union-attr]
    db["rounds"].add_column("config_version", int, not_null_default=1)  # type: ignore[union-attr]
    db["task_configs"].create(  # type: ignore[union-attr]
        {"task": str, "version": int, "config": str, "created_at": float, "reason": str},
        pk=("task", "version"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["task_log"].create(  # type: ignore[union-attr]
        {
            "id": int,
            "task": str,
            "at": float,
            "change": str,
            "status": str,
            "config_version": int,
            "reason": str,
        },
        pk="id",
        foreign_keys=[("task", "tasks", "name")],
    )
    db["task_log"].create_index(["task", "id"])  # type: ignore[union-attr]
    # Tasks made before: their config is their version 1 (there was no way to edit one), and
    # their log starts with their creation. A status they reached since is logged at the time
    # of this migration, saying so: when it changed was not recorded. "stopped" (stop for good)
    # is called "archived" now.
    now = time.time()
    db.execute("UPDATE tasks SET status = 'archived' WHERE status = 'stopped'")
    db.execute(
        "INSERT INTO task_configs (task, version, config, created_at, reason) "
        "SELECT name, 1, config, created_at, '' FROM tasks"
    )
    db.execute(
        "INSERT INTO task_log (task, at, change, status, config_version, reason) "
        "SELECT name, created_at, 'created', 'active', 1, '' FROM tasks"
    )
    db.execute(
        "INSERT INTO task_log (task, at, change, status, config_version, reason) "
        "SELECT name, ?, 'status', status, 1, 'status before the task log was kept (m006)' "
        "FROM tasks WHERE status != 'active'",
        [now],
    )


@MIGRATIONS()
def m007_evaluation(db: Database) -> None:
    # Evaluation rounds: a round's kind ("train" or "evaluate"; every existing round trained),
    # a ledger entry's kind (what it charged for), and each evaluation round's result — the
    # released sums over its reports and their means, or withheld below k. Nothing per worker.
    db["rounds"].add_column("kind", str, not_null_default="train")  # type: ignore[union-attr]
    db["privacy_ledger"].add_column(  # type: ignore[union-attr]
        "kind", str, not_null_default="train"
    )
    db["evaluations"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "model_version": int,
            "reports": int,
            "withheld": int,
            "count": float,
            "loss_sum": float,
            "correct": float,
            "loss": float,
            "accuracy": float,
            "noise_multiplier": float,
            "opened_at": float,
            "closed_at": float,
        },
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )


@MIGRATIONS()
def m008_leader_epochs(db: Database) -> None:
    # A cluster's leader commits with the fencing epoch of its lease (dandelion.cluster.leader):
    # the largest one each task committed with, so a deposed leader's late commit is refused.
    db["leader_epochs"].create(  # type: ignore[union-attr]
        {"task": str, "epoch": int},
        pk="task",
        not_null={"epoch"},
        foreign_keys=[("task", "tasks", "name")],
    )


@MIGRATIONS()
def m009_shard_checkpoints(db: Database) -> None:
    # A cluster's shards each checkpoint their partial aggregate of an open round (a sum of at
    # least k updates); the leader seals the round (no shard checkpoint after that), merges
    # them and commits. Both rows live only while the round is open.
    db["shard_checkpoints"].create(  # type: ignore[union-attr]
        {
            "task": str,
            "round": int,
            "shard": str,
            "aggregate": bytes,
            "reports": int,
            "rejected": int,
            "updated_at": float,
        },
        pk=("task", "round", "shard"),
        foreign_keys=[("task", "tasks", "name")],
    )
    db["sealed_rounds"].create(  # type: ignore[union-attr]
        {"task": str, "round": int, "sealed_at": float},
        pk=("task", "round"),
        foreign_keys=[("task", "tasks", "name")],
    )
