"""``/metrics`` for Prometheus (prometheus_client, text format), behind the admin token.

Three kinds of figures, all aggregates:

- the participation funnel and consent counts from the dashboard's snapshot (withheld below
  ``monitor_k`` like everywhere else: a withheld figure is simply absent);
- rounds: closed rounds by outcome, and the durations and reports of the rounds whose figures
  may be shown (``stats.shows_figures``: at least k reports) — a round with fewer than k
  reports adds one to ``dandelion_rounds_total`` and nothing else;
- ingest: connections, messages, accepted and rejected updates and their bytes, from the
  worker endpoint. These count what workers did, so they move in steps of k: each is rounded
  down to a multiple of k (0 until k events), and update bytes move only when the accepted
  count does. No two scrapes differ by fewer than k events.

Samples are labelled by task and event kind only — never by worker — and no sample carries a
time: the families are built here, without prometheus_client's ``_created`` series (the exact
time a first round closed). On a shard of a cluster every sample also carries ``shard``, the
shard's name as ``/healthz`` shows it: Prometheus scrapes each shard, and a shard's ingest and
connection figures are its own, its rounds the ones it closed as the leader.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..coordinator import RoundOutcome
from ..transport.websocket import WorkerEndpoint
from .stats import SnapshotCache, shows_figures

__all__ = ["Metrics", "add_metrics_route"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _steps(n: int, k: int) -> int:
    """``n`` rounded down to a multiple of ``k``."""
    return n // k * k


class _Live(Collector):
    """The endpoint's counters (in steps of k) and the snapshot's figures, read at scrape."""

    def __init__(
        self,
        endpoint: Callable[[], WorkerEndpoint | None],
        snapshot: Callable[[], dict[str, Any] | None],
        k: int,
    ) -> None:
        self.endpoint = endpoint
        self.snapshot = snapshot
        self.k = k
        # Update bytes as they were when the accepted count last reached a multiple of k.
        self._accepted_shown = 0
        self._bytes_shown = 0

    def collect(self) -> Iterator[Metric]:
        endpoint = self.endpoint()
        if endpoint is not None:
            yield from self._ingest(endpoint)
        snapshot = self.snapshot()
        if snapshot is None:
            return
        funnel = GaugeMetricFamily(
            "dandelion_funnel",
            f"Participation funnel over the last {snapshot['window_s']:g} s (opted_in, "
            "connected_now: current). Absent below k.",
            labels=["stage"],
        )
        for stage, value in snapshot["funnel"].items():
            if value is not None:
                funnel.add_metric([stage], value)
        yield funnel
        epsilon = GaugeMetricFamily(
            "dandelion_epsilon_spent", "Privacy spent by a DP task.", labels=["task"]
        )
        version = GaugeMetricFamily(
            "dandelion_model_version", "Latest model version.", labels=["task"]
        )
        for task in snapshot["tasks"]:
            if task["epsilon_spent"] is not None:
                epsilon.add_metric([task["name"]], task["epsilon_spent"])
            if task["model_version"] is not None:
                version.add_metric([task["name"]], task["model_version"])
        yield epsilon
        yield version

    def _ingest(self, endpoint: WorkerEndpoint) -> Iterator[Metric]:
        c, k = endpoint.counters, self.k
        step = f" In steps of {k}."
        yield _counter(
            "dandelion_ws_connections_opened",
            "WebSocket connections accepted." + step,
            _steps(c.connections_opened, k),
        )
        yield _counter(
            "dandelion_ws_messages", "Worker messages handled." + step, _steps(c.messages, k)
        )
        updates = CounterMetricFamily(
            "dandelion_updates", "Model updates received, by outcome." + step, labels=["outcome"]
        )
        accepted = _steps(c.updates_accepted, k)
        updates.add_metric(["accepted"], accepted)
        updates.add_metric(["rejected"], _steps(c.updates_rejected, k))
        yield updates
        if accepted > self._accepted_shown:
            self._accepted_shown, self._bytes_shown = accepted, c.update_bytes
        yield _counter(
            "dandelion_update_bytes",
            f"Payload bytes of accepted updates (moves when {k} more are accepted).",
            self._bytes_shown,
        )
        yield _counter(
            "dandelion_protocol_violations",
            "Malformed or out-of-order worker messages." + step,
            _steps(c.protocol_violations, k),
        )
        connected = endpoint.open_connections()
        if connected >= k:
            yield GaugeMetricFamily(
                "dandelion_connected_workers", "Workers connected now.", value=connected
            )


class _Rounds(Collector):
    """Closed rounds by task and outcome; durations and reports of the rounds with at least k
    reports only (a smaller round's duration is one worker's report time)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.closed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.reports: defaultdict[str, int] = defaultdict(int)
        # Per task: how many durations fell at or below each bucket bound, their count, sum.
        self.durations: dict[str, tuple[list[int], int, float]] = {}

    def add(self, outcome: RoundOutcome) -> None:
        self.closed[outcome.task, outcome.status] += 1
        if shows_figures(outcome.reported, self.k):
            self.reports[outcome.task] += outcome.reported
            seconds = max(0.0, outcome.closed_at - outcome.opened_at)
            below, count, total = self.durations.get(outcome.task, ([0] * len(_BOUNDS), 0, 0.0))
            for i, bound in enumerate(_BOUNDS):
                below[i] += seconds <= bound
            self.durations[outcome.task] = (below, count + 1, total + seconds)

    def collect(self) -> Iterator[Metric]:
        closed = CounterMetricFamily(
            "dandelion_rounds", "Rounds closed, by task and outcome.", labels=["task", "status"]
        )
        for (task, status), n in sorted(self.closed.items()):
            closed.add_metric([task, status], n)
        yield closed
        reports = CounterMetricFamily(
            "dandelion_round_reports",
            f"Reports aggregated into closed rounds of at least {self.k} reports.",
            labels=["task"],
        )
        for task, n in sorted(self.reports.items()):
            reports.add_metric([task], n)
        yield reports
        duration = HistogramMetricFamily(
            "dandelion_round_duration_seconds",
            f"Time from a round's opening to its close (rounds of at least {self.k} reports).",
            labels=["task"],
        )
        for task, (below, count, total) in sorted(self.durations.items()):
            cumulative = [(f"{bound:g}", float(n)) for bound, n in zip(_BOUNDS, below, strict=True)]
            duration.add_metric([task], [*cumulative, ("+Inf", float(count))], sum_value=total)
        yield duration


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class _Labelled(Collector):
    """Another collector's families, each sample with ``labels`` added (a shard's name)."""

    def __init__(self, inner: Collector, labels: dict[str, str]) -> None:
        self.inner, self.labels = inner, labels

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            family.samples = [
                s._replace(labels={**s.labels, **self.labels}) for s in family.samples
            ]
            yield family


class Metrics:
    """The registry ``/metrics`` serves; ``on_round`` is a coordinator round listener.
    :meth:`label` adds a label to every sample (a shard's name)."""

    def __init__(
        self,
        endpoint: Callable[[], WorkerEndpoint | None],
        snapshot: Callable[[], dict[str, Any] | None],
        k: int,
    ) -> None:
        self.registry = CollectorRegistry()
        self._rounds = _Rounds(k)
        self._collectors: list[Collector] = [self._rounds, _Live(endpoint, snapshot, k)]
        for collector in self._collectors:
            self.registry.register(collector)

    def label(self, name: str, value: str) -> None:
        """Add ``name="value"`` to every sample from now on (once, before the first scrape)."""
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors = [_Labelled(c, {name: value}) for c in self._collectors]
        for collector in self._collectors:
            self.registry.register(collector)

    def on_round(self, outcome: RoundOutcome) -> None:
        self._rounds.add(outcome)


METRICS: web.AppKey[Metrics] = web.AppKey("dandelion_metrics", Metrics)


def add_metrics_route(app: web.Application, snapshots: Callable[[], SnapshotCache | None]) -> None:
    async def metrics(request: web.Request) -> web.Response:
        cache = snapshots()
        if cache is not None:
            await cache.get()  # fresh enough: at most dashboard_refresh_s old
        body = generate_latest(request.app[METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

    app.router.add_get("/metrics", metrics)
