"""``/metrics`` for Prometheus (prometheus_client, text format), behind the admin token.

Three kinds of figures, all aggregates:

- the participation funnel and consent counts from the dashboard's snapshot (withheld below
  ``monitor_k`` like everywhere else: a withheld figure is simply absent);
- rounds: completed/abandoned counts, durations and reports, from the coordinator's round
  listener;
- ingest: messages, accepted and rejected updates and their bytes, from the worker endpoint.

Samples are labelled by task and event kind only — never by worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..coordinator import RoundOutcome
from ..transport.websocket import WorkerEndpoint
from .stats import SnapshotCache

__all__ = ["Metrics", "add_metrics_route"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Live(Collector):
    def __init__(
        self,
        endpoint: Callable[[], WorkerEndpoint | None],
        snapshot: Callable[[], dict[str, Any] | None],
        k: int,
    ) -> None:
        self.endpoint = endpoint
        self.snapshot = snapshot
        self.k = k

    def collect(self) -> Iterator[Metric]:
        endpoint = self.endpoint()
        if endpoint is not None:
            c = endpoint.counters
            yield _counter(
                "dandelion_ws_connections_opened",
                "WebSocket connections accepted.",
                c.connections_opened,
            )
            yield _counter("dandelion_ws_messages", "Worker messages handled.", c.messages)
            updates = CounterMetricFamily(
                "dandelion_updates", "Model updates received, by outcome.", labels=["outcome"]
            )
            updates.add_metric(["accepted"], c.updates_accepted)
            updates.add_metric(["rejected"], c.updates_rejected)
            yield updates
            yield _counter(
                "dandelion_update_bytes", "Payload bytes of accepted updates.", c.update_bytes
            )
            yield _counter(
                "dandelion_protocol_violations",
                "Malformed or out-of-order worker messages.",
                c.protocol_violations,
            )
            connected = endpoint.open_connections()
            if connected >= self.k:
                yield GaugeMetricFamily(
                    "dandelion_connected_workers", "Workers connected now.", value=connected
                )
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


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """The registry ``/metrics`` serves; ``on_round`` is a coordinator round listener."""

    def __init__(
        self,
        endpoint: Callable[[], WorkerEndpoint | None],
        snapshot: Callable[[], dict[str, Any] | None],
        k: int,
    ) -> None:
        self.registry = CollectorRegistry()
        self.rounds = Counter(
            "dandelion_rounds",
            "Rounds closed, by task and outcome.",
            ["task", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "dandelion_round_duration_seconds",
            "Time from a round's opening to its close.",
            ["task"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )
        self.reports = Counter(
            "dandelion_round_reports",
            "Reports aggregated into closed rounds.",
            ["task"],
            registry=self.registry,
        )
        self.registry.register(_Live(endpoint, snapshot, k))

    def on_round(self, outcome: RoundOutcome) -> None:
        self.rounds.labels(outcome.task, outcome.status).inc()
        self.duration.labels(outcome.task).observe(max(0.0, outcome.closed_at - outcome.opened_at))
        self.reports.labels(outcome.task).inc(outcome.reported)


METRICS: web.AppKey[Metrics] = web.AppKey("dandelion_metrics", Metrics)


def add_metrics_route(app: web.Application, snapshots: Callable[[], SnapshotCache | None]) -> None:
    async def metrics(request: web.Request) -> web.Response:
        cache = snapshots()
        if cache is not None:
            await cache.get()  # fresh enough: at most dashboard_refresh_s old
        body = generate_latest(request.app[METRICS].registry)
        return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

    app.router.add_get("/metrics", metrics)
