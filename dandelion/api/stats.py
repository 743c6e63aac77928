"""Participation and round figures for operators — aggregates only, and never a small one.

Every count below ``k`` (the ``monitor_k`` setting, 10 by default) is withheld: the API returns
``null`` with ``"<k"`` beside it, the dashboard prints "<10". A funnel that said "1 reported in
the last minute" would point at one browser; a count of at least k hides each worker among k.
Times are bucketed (``monitor_bucket_s``, a minute by default) and no per-worker row exists
anywhere in these figures. See docs/monitoring.md.

Rules of this file: it is the one place that decides what of a round an operator may see.
:func:`round_figures` (a round) and :func:`model_figures` (the model version a round made) are
what the dashboard, the admin API and ``/metrics`` (:func:`shows_figures`) all use: a round
with fewer than k reports shows no metrics (loss, accuracy, norms, clip fractions — averages
over fewer than k workers), no duration, its counts as "<k", and its times bucketed like every
other time. Snapshots are made strictly JSON-safe (:func:`~.strict_json.finite`).

An evaluation round's result (:func:`evaluation_figures`) follows the same rule: below k
reports it was withheld when it closed, and it shows no figure; with k or more it shows its
released sums and means (noised under ``[privacy]``), its report count, its times bucketed.

ε and δ are outputs of the DP mechanism, not figures about workers: they are shown whatever the
counts, and always with the guarantee they stand for (``guarantee``, from
:func:`dandelion.privacy.guarantee.guarantee`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..coordinator import Coordinator
from ..privacy.config import privacy_config
from ..privacy.guarantee import guarantee
from ..settings import Settings
from ..storage import (
    AsyncStore,
    EvaluationRecord,
    LedgerEntry,
    ModelVersionInfo,
    RoundRecord,
    StateStore,
    TaskRecord,
)
from .strict_json import finite

__all__ = [
    "FUNNEL",
    "SnapshotCache",
    "bucket",
    "build_snapshot",
    "cluster_figures",
    "evaluation_figures",
    "model_figures",
    "model_metrics",
    "open_round",
    "round_figures",
    "shows_figures",
    "suppress",
]

#: The participation funnel, in the order a worker goes through it.
FUNNEL = ("opted_in", "connected_now", "checked_in", "selected", "reported", "dropped", "opted_out")
_SERIES = ("connected", "checked_in", "selected", "reported", "rejected", "dropped", "opted_out")
_ROUND_METRICS = ("loss", "accuracy", "mean_norm", "clip_norm", "noise_std", "epsilon")
ROUNDS_SHOWN = 50


def suppress(count: int | None, k: int) -> int | None:
    """``count`` if it is at least ``k``, else None (shown as "<k")."""
    if count is None or count < k:
        return None
    return int(count)


def bucket(t: float | None, width: float) -> float | None:
    """``t`` rounded down to a multiple of ``width`` (None stays None)."""
    return None if t is None else math.floor(t / width) * width


def shows_figures(reported: int, k: int) -> bool:
    """Whether the figures of a round with ``reported`` reports may be shown: at least k."""
    return reported >= k


def round_figures(r: RoundRecord, k: int, bucket_s: float) -> dict[str, Any]:
    """One round as operators see it. Counts below ``k`` are None; a round with fewer than k
    reports has empty ``metrics`` and no ``duration_s``; times are bucketed to ``bucket_s``."""
    enough = shows_figures(r.reported, k)
    duration = None
    if enough and r.closed_at is not None:
        duration = round(r.closed_at - r.opened_at, 1)
    return {
        "round": r.round,
        "kind": r.kind,
        "status": r.status,
        "goal": r.goal,  # the plan, not a count of workers
        "model_version": r.model_version,
        "opened_at": bucket(r.opened_at, bucket_s),
        "closed_at": bucket(r.closed_at, bucket_s),
        "duration_s": duration,
        "assigned": suppress(r.assigned, k),
        "reported": suppress(r.reported, k),
        "rejected": suppress(r.rejected, k),
        "dropped": suppress(r.dropped, k),
        "metrics": finite(dict(r.metrics)) if enough else {},
        "withheld_below": k,
        "config_version": r.config_version,  # which of the task's configs it ran under
    }


def evaluation_figures(e: EvaluationRecord, k: int, bucket_s: float) -> dict[str, Any]:
    """An evaluation round's result as operators see it: with fewer than ``k`` reports (when it
    closed, or by today's k) ``withheld``, every figure None and the report count too; else
    the released sums and means. Times are bucketed to ``bucket_s``."""
    shown = not e.withheld and shows_figures(e.reports, k)
    figures = ("count", "loss_sum", "correct", "loss", "accuracy")
    row: dict[str, Any] = {
        "round": e.round,
        "model_version": e.model_version,
        "withheld": not shown,
        "reports": suppress(e.reports, k),
        **{name: getattr(e, name) if shown else None for name in figures},
        "noise_multiplier": e.noise_multiplier,  # the mechanism's, not a figure of workers
        "opened_at": bucket(e.opened_at, bucket_s),
        "closed_at": bucket(e.closed_at, bucket_s),
        "withheld_below": k,
    }
    made: dict[str, Any] = finite(row)
    return made


def model_metrics(
    metrics: Mapping[str, Any], made_by: RoundRecord | None, k: int
) -> dict[str, Any]:
    """A model version's metrics as operators see them: they are the figures of ``made_by``,
    the round that made the version, and are shown only when that round's are (none for the
    initial version, which no round made)."""
    enough = made_by is not None and shows_figures(made_by.reported, k)
    shown: dict[str, Any] = finite(dict(metrics)) if enough else {}
    return shown


def model_figures(
    v: ModelVersionInfo, made_by: RoundRecord | None, k: int, bucket_s: float
) -> dict[str, Any]:
    """A model version as operators see it (:func:`model_metrics`, its time bucketed)."""
    return {
        "version": v.version,
        "round": v.round,
        "created_at": bucket(v.created_at, bucket_s),
        "bytes": v.size_bytes,
        "metrics": model_metrics(v.metrics, made_by, k),
    }


@dataclass(frozen=True, slots=True)
class _Raw:
    histogram: list[tuple[float, str, int]]
    consent: dict[str, int]
    tasks: list[TaskRecord]
    rounds: dict[str, list[RoundRecord]]
    ledgers: dict[str, list[LedgerEntry]]
    evaluations: dict[str, list[EvaluationRecord]]


async def _collect(store: AsyncStore, since: float, bucket_s: float) -> _Raw:
    def read(s: StateStore) -> _Raw:
        tasks = s.list_tasks()
        return _Raw(
            histogram=s.event_histogram(since=since, bucket_s=bucket_s),
            consent=s.consent_counts(),
            tasks=tasks,
            rounds={t.name: s.list_rounds(t.name, ROUNDS_SHOWN) for t in tasks},
            ledgers={t.name: s.list_ledger(t.name) for t in tasks},
            evaluations={t.name: s.list_evaluations(t.name, ROUNDS_SHOWN) for t in tasks},
        )

    return await store.read(read)


def _round_row(
    r: RoundRecord, k: int, bucket_s: float, clip_default: float | None
) -> dict[str, Any]:
    """A round of the dashboard: :func:`round_figures`, its metrics as columns."""
    row = round_figures(r, k, bucket_s)
    shown = row.pop("metrics")
    metrics = {m: shown.get(m) for m in _ROUND_METRICS}
    if metrics["clip_norm"] is None and shows_figures(r.reported, k):
        metrics["clip_norm"] = clip_default
    return {**row, **metrics}


def build_snapshot(
    raw: _Raw,
    coordinator: Coordinator | None,
    connected: int,
    settings: Settings,
    now: float,
    cluster: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the dashboard shows. ``connected`` is this process's connections;
    ``cluster``, on a shard, every shard's place (:func:`cluster_figures`)."""
    k, width = settings.monitor_k, settings.monitor_bucket_s
    start = math.floor((now - settings.monitor_window_s) / width) * width
    buckets = [start + i * width for i in range(int((now - start) // width) + 1)]
    index = {b: i for i, b in enumerate(buckets)}
    raw_series: dict[str, list[int]] = {e: [0] * len(buckets) for e in _SERIES}
    for b, event, n in raw.histogram:
        if event in raw_series and b in index:
            raw_series[event][index[b]] += n
    tasks = []
    for record in raw.tasks:
        runtime = coordinator.tasks.get(record.name) if coordinator is not None else None
        config = runtime.config if runtime is not None else None
        clip_default = runtime.clip_norm if runtime is not None else None
        rounds = raw.rounds.get(record.name, [])
        for r in rounds:  # drops, by the bucket their round closed in
            closed = bucket(r.closed_at, width)
            if closed is not None and closed in index and r.dropped:
                raw_series["dropped"][index[closed]] += r.dropped
        ledger = raw.ledgers.get(record.name, [])
        # The runtime's own, or the stored table for a task the coordinator has not loaded.
        privacy = config.privacy if config is not None else privacy_config(record.config)
        spent = ledger[-1].epsilon if ledger else (0.0 if privacy else None)
        tasks.append(
            {
                "name": record.name,
                "status": record.status,
                "reason": record.reason,
                "model_version": runtime.model_version if runtime is not None else None,
                "goal": config.rounds.goal if config is not None else None,
                "epsilon_spent": spent,
                "epsilon_budget": privacy.epsilon if privacy is not None else None,
                "delta": privacy.delta if privacy is not None else None,
                "guarantee": (
                    guarantee(privacy, spent) if privacy is not None and spent is not None else None
                ),
                # Training rounds; evaluation rounds have their own figures, beside them.
                "rounds": [
                    _round_row(r, k, width, clip_default)
                    for r in reversed(rounds)
                    if r.kind == "train"
                ],
                "evaluations": [
                    evaluation_figures(e, k, width)
                    for e in reversed(raw.evaluations.get(record.name, []))
                ],
                "waiting": _waiting(coordinator, record.name, k),
                "open_round": open_round(coordinator, record.name, k),
            }
        )
    series = {e: [suppress(n, k) for n in values] for e, values in raw_series.items()}
    totals = {e: sum(values) for e, values in raw_series.items()}
    funnel = {
        "opted_in": suppress(raw.consent.get("opted_in", 0), k),
        "connected_now": suppress(connected, k),
        "checked_in": suppress(totals["checked_in"], k),
        "selected": suppress(totals["selected"], k),
        "reported": suppress(totals["reported"], k),
        "dropped": suppress(totals["dropped"], k),
        "opted_out": suppress(totals["opted_out"], k),
    }
    snapshot: dict[str, Any] = finite(
        {
            "as_of": math.floor(now / width) * width,
            "k": k,
            "bucket_s": width,
            "window_s": settings.monitor_window_s,
            "funnel": funnel,
            "series": {"buckets": buckets, **series},
            "tasks": tasks,
        }
    )
    shards = cluster_figures(cluster, k)
    if shards is not None:
        snapshot["cluster"] = shards
    return snapshot


def open_round(coordinator: Coordinator | None, name: str, k: int) -> dict[str, Any] | None:
    """The task's open round: its number and durable reports (the cluster's on a shard),
    below ``k`` None; None without an open round."""
    if coordinator is None:
        return None
    found = coordinator.open_round(name)
    if found is None:
        return None
    number, reported = found
    return {"round": number, "reported": suppress(reported, k), "withheld_below": k}


def cluster_figures(view: Mapping[str, Any] | None, k: int) -> dict[str, Any] | None:
    """A cluster's shards as operators see them: each shard's name, the tasks it leads and
    its open connections (below ``k`` None), and their sum (below ``k`` None)."""
    if view is None:
        return None
    shards = [
        {
            "shard": p["shard"],
            "connections": suppress(p["connections"], k),
            "leads": list(p["leads"]),
        }
        for p in view["shards"]
    ]
    total = sum(int(p["connections"]) for p in view["shards"])
    return {"shard": view["shard"], "shards": shards, "connections": suppress(total, k)}


def _waiting(coordinator: Coordinator | None, name: str, k: int) -> str | None:
    """Why the task's open round is still open, in words (None without an open round)."""
    if coordinator is None or name not in coordinator.tasks:
        return None
    return coordinator.round_waiting(name, k)


class SnapshotCache:
    """One snapshot at a time, recomputed at most every ``dashboard_refresh_s`` and shared by
    every dashboard and API caller: a thousand open dashboards cost one query."""

    def __init__(
        self,
        store: AsyncStore,
        coordinator: Callable[[], Coordinator | None],
        connected: Callable[[], int],
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.coordinator = coordinator
        self.connected = connected
        self.settings = settings
        self.clock = clock
        self._value: dict[str, Any] | None = None
        self._made = -math.inf
        self._lock = asyncio.Lock()
        self.version = 0

    @property
    def latest(self) -> dict[str, Any] | None:
        """The last snapshot made, without making one."""
        return self._value

    async def get(self) -> dict[str, Any]:
        if (
            self._value is not None
            and time.monotonic() - self._made < self.settings.dashboard_refresh_s
        ):
            return self._value
        async with self._lock:
            if (
                self._value is None
                or time.monotonic() - self._made >= self.settings.dashboard_refresh_s
            ):
                now = self.clock()
                since = now - self.settings.monitor_window_s - self.settings.monitor_bucket_s
                raw = await _collect(self.store, since, self.settings.monitor_bucket_s)
                coordinator = self.coordinator()
                view = await coordinator.coordination.view() if coordinator else None
                value = build_snapshot(raw, coordinator, self.connected(), self.settings, now, view)
                if value != self._value:
                    self.version += 1
                self._value = value
                self._made = time.monotonic()
        return self._value
