"""The task registry: every task's runtime, created along one path and resumed from storage.

Rules of this file: it reads and writes tasks and model versions; it never decides about
rounds. :func:`create_task` is the one way a task comes to exist (the coordinator, the admin API
and the CLI all call it); :meth:`TaskRegistry.load` rebuilds a runtime from its last committed
model version, privacy ledger and optimizer state, under the config its open round opened with
(the task's current one when no round is open). A new config version (``taskchanges.py``) is
taken up by :meth:`TaskRegistry.reload` — the same rebuild — once the open round has ended.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

import numpy as np

from ..aggregation.optimizers import decode_state
from ..privacy import PrivacyLedger
from ..privacy.ftrl import TreeNoise
from ..storage import (
    AsyncStore,
    LedgerEntry,
    ModelVersion,
    RoundRecord,
    StateStore,
    TaskConfigVersion,
    TaskRecord,
)
from ..taskspec.models import init_params
from .entropy import Entropy
from .runtime import TaskRuntime
from .taskconfig import TaskConfig

__all__ = ["TaskRegistry", "create_task"]

log = logging.getLogger("dandelion.coordinator")

#: The name of a DP-FTRL task's tree-noise key in ``task_secrets``.
_TREE_KEY = "ftrl_tree"


def _reporters(task: str, number: int, store: StateStore) -> tuple[set[str], set[str]]:
    return store.round_participants(task, number)


#: How far back to look for the last evaluation round that closed by its own rule (the later
#: ones may have been interrupted, each by a restart).
_EVALUATIONS_SEEN = 20


def _evaluated_version(task: str, store: StateStore) -> int | None:
    """The model version the task's last evaluation round scored (completed or abandoned; an
    interrupted one is opened again), or None."""
    for r in store.list_rounds(task, _EVALUATIONS_SEEN, kind="evaluate"):
        if r.status in ("completed", "abandoned"):
            return r.model_version
    return None


class TaskRegistry:
    """The coordinator's tasks by name."""

    def __init__(self, store: AsyncStore, entropy: Entropy | None = None) -> None:
        self.store = store
        self.entropy = entropy or Entropy()
        self.tasks: dict[str, TaskRuntime] = {}
        #: Tasks in storage this process cannot run (an objective or model it does not have):
        #: name -> (config version, why). Tried again when the task's config version changes.
        self.unrunnable: dict[str, tuple[int, str]] = {}

    async def refresh(self) -> list[TaskRuntime]:
        """Load tasks added in storage (by the CLI or the API) since the last look and follow
        status changes; return the runtimes that are new. A task that does not load here (a
        task created with ``--with`` a package the served bundle lacks) is left out with one
        warning, not retried at every tick."""
        records: list[TaskRecord] = await self.store.read(lambda s: s.list_tasks())
        new: list[TaskRuntime] = []
        for record in records:
            runtime = self.tasks.get(record.name)
            if runtime is None:
                known = self.unrunnable.get(record.name)
                if known is not None and known[0] == record.config_version:
                    continue
                try:
                    runtime = await self.load(record)
                except (ValueError, LookupError, RuntimeError) as exc:
                    self.unrunnable[record.name] = (record.config_version, str(exc))
                    if record.status != "archived":
                        log.warning("task %s is not run here: %s", record.name, exc)
                    continue
                self.unrunnable.pop(record.name, None)
                self.tasks[record.name] = runtime
                new.append(runtime)
            else:
                if runtime.status != record.status:
                    runtime.status = record.status
                    runtime.reason = record.reason
                if runtime.config_version != record.config_version:
                    runtime.reload = True  # taken up once its open round has ended
        return new

    async def reload(self, runtime: TaskRuntime) -> TaskRuntime:
        """Build an idle task's runtime again from storage, under its current config version
        (as a restart would); return the new runtime, now the registry's."""
        assert runtime.idle, "a task's config changes only between rounds"
        name = runtime.name
        runtime.opening = True  # no round opens under the old config meanwhile
        try:
            record: TaskRecord | None = await self.store.read(lambda s: s.get_task(name))
            if record is None:
                return runtime
            fresh = await self.load(record)
        finally:
            runtime.opening = False
        self.tasks[name] = fresh
        log.info("task %s takes up config version %d", name, fresh.config_version)
        return fresh

    async def load(self, record: TaskRecord) -> TaskRuntime:
        """A task's runtime at its last committed model version. Raises RuntimeError for a
        task without one."""
        name = record.name
        latest: ModelVersion | None = await self.store.read(lambda s: s.latest_model_version(name))
        if latest is None:
            raise RuntimeError(f"task {name!r} has no model version")
        last_round: int = await self.store.read(lambda s: s.last_round_number(name))
        version, raw = await self._config_in_force(record, last_round)
        config = TaskConfig.from_dict(raw)
        completed = await self.store.read(lambda s: len(s.list_model_versions(name)) - 1)
        params = np.frombuffer(latest.params, dtype="<f4").astype(np.float32)
        state = decode_state(latest.optimizer_state) if latest.optimizer_state else None
        ledger, clip_norm = None, None
        if config.privacy is not None:
            entries: list[LedgerEntry] = await self.store.read(lambda s: s.list_ledger(name))
            ledger = PrivacyLedger.from_entries(
                config.privacy,
                ((e.sampling_rate, e.noise_multiplier, e.epsilon, e.kind) for e in entries),
            )
            trained = [e for e in entries if e.kind == "train"]
            if trained:
                clip_norm = trained[-1].next_clip_norm
        evaluated = await self.store.read(functools.partial(_evaluated_version, name))
        log.info("task %s at model version %d, round %d", name, latest.version, last_round)
        runtime = TaskRuntime(
            config,
            record.status,
            params,
            latest.version,
            last_round,
            completed,
            state,
            ledger=ledger,
            clip_norm=clip_norm,
            reason=record.reason,
            config_version=version,
            evaluated_version=evaluated,
        )
        runtime.reload = version != record.config_version
        await self._attach_ftrl(runtime)
        return runtime

    async def _config_in_force(
        self, record: TaskRecord, last_round: int
    ) -> tuple[int, dict[str, Any]]:
        """The config version (and config) the task runs under: that of its open round, which
        finishes under the config it opened with, or else the task's current one."""
        name = record.name
        if last_round:
            rnd: RoundRecord | None = await self.store.read(lambda s: s.get_round(name, last_round))
            if (
                rnd is not None
                and rnd.status == "open"
                and rnd.config_version != record.config_version
            ):
                number = rnd.config_version
                kept: TaskConfigVersion | None = await self.store.read(
                    lambda s: s.get_task_config(name, number)
                )
                if kept is not None:
                    return kept.version, kept.config
        return record.config_version, record.config

    async def _attach_ftrl(self, runtime: TaskRuntime) -> None:
        """DP-FTRL: the task's tree noise from its stored key (made once), and who took part in
        its last ``min_separation`` released rounds (from their participation events)."""
        privacy = runtime.config.privacy
        if privacy is None or not privacy.ftrl:
            return
        name = runtime.name
        fresh = self.entropy.task_key()
        key: str = await self.store.write(lambda s: s.task_secret(name, _TREE_KEY, fresh))
        std = privacy.noise_multiplier * runtime.config.clip_norm
        runtime.tree_noise = TreeNoise(bytes.fromhex(key), runtime.config.model.param_count, std)
        everything: list[LedgerEntry] = await self.store.read(lambda s: s.list_ledger(name))
        entries = [e for e in everything if e.kind == "train"]  # the trees' rounds only
        first = max(0, len(entries) - privacy.min_separation)
        for index, entry in enumerate(entries[first:], start=first + 1):
            _, reported = await self.store.read(functools.partial(_reporters, name, entry.round))
            for worker in reported:
                runtime.last_participation[worker] = index

    async def add(self, config: TaskConfig, now: float) -> TaskRuntime:
        """Create a task with its initial model (version 0). Raises ConflictError."""
        runtime = await self.store.write(lambda s: create_task(s, config, now))
        await self._attach_ftrl(runtime)
        self.tasks[config.name] = runtime
        return runtime


def create_task(store: StateStore, config: TaskConfig, now: float) -> TaskRuntime:
    """Store a new task and its initial model, in the caller's transaction; return its runtime.
    Raises ConflictError when the name is taken."""
    params = np.asarray(
        init_params(config.model, random.Random(config.init_seed)), dtype=np.float32
    )
    with store.transaction():
        store.create_task(TaskRecord(config.name, config.to_dict(), "active", now))
        store.save_model_version(
            ModelVersion(config.name, 0, 0, params.astype("<f4").tobytes(), b"", now, {})
        )
    return TaskRuntime(config, "active", params, 0, store.last_round_number(config.name), 0)
