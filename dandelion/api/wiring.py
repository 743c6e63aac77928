"""Wires the operators' side into the application: admin API, dashboard, ``/metrics``, and the
token check and error shape in front of them; and beside them the public model endpoints
(``/models/``), which need no token.

:func:`install` runs while the application is built; :meth:`Operator.start` runs once the
store, coordinator and endpoint exist (in the app's lifecycle), so the routes find them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..coordinator import Coordinator
from ..settings import Settings
from ..storage import AsyncStore
from ..transport import WorkerEndpoint
from .admin import CONTEXT, AdminContext, add_admin_routes
from .auth import TokenChecker, bearer_auth
from .dashboard import add_dashboard_routes
from .errors import json_errors
from .metrics import METRICS, Metrics, add_metrics_route
from .public import add_public_routes, public_headers
from .stats import SnapshotCache

__all__ = ["Operator", "install"]


class Operator:
    """What the operator routes need, filled in when the application starts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: AsyncStore | None = None
        self.coordinator: Coordinator | None = None
        self.endpoint: WorkerEndpoint | None = None
        self.snapshots: SnapshotCache | None = None
        self.tokens: TokenChecker | None = None
        self.metrics = Metrics(lambda: self.endpoint, self._latest, settings.monitor_k)

    def _latest(self) -> dict[str, Any] | None:
        return self.snapshots.latest if self.snapshots is not None else None

    def start(self, store: AsyncStore, coordinator: Coordinator, endpoint: WorkerEndpoint) -> None:
        self.store, self.coordinator, self.endpoint = store, coordinator, endpoint
        self.tokens = TokenChecker(store)
        self.snapshots = SnapshotCache(
            store, lambda: self.coordinator, endpoint.open_connections, self.settings
        )
        coordinator.add_listener(self.metrics.on_round)
        place = coordinator.coordination.describe()
        if place is not None:  # a shard of a cluster: its samples say which
            self.metrics.label("shard", str(place["shard"]))

    def checker(self) -> TokenChecker:
        if self.tokens is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return self.tokens


OPERATOR: web.AppKey[Operator] = web.AppKey("dandelion_operator", Operator)


def install(app: web.Application, settings: Settings) -> Operator:
    operator = Operator(settings)
    app[OPERATOR] = operator
    app[METRICS] = operator.metrics
    app[CONTEXT] = AdminContext(
        settings, lambda: operator.store, lambda: operator.coordinator, lambda: operator.snapshots
    )
    app.middlewares.append(public_headers)  # outermost: its headers go on the errors too
    app.middlewares.append(json_errors)
    app.middlewares.append(bearer_auth(operator.checker))
    add_admin_routes(app)
    add_public_routes(app)
    add_dashboard_routes(app, lambda: operator.snapshots)
    add_metrics_route(app, lambda: operator.snapshots)
    return operator
