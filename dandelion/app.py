"""The one aiohttp application on one port: worker WebSocket endpoint, health check, the
worker bundle (``/worker/``), and the operators' admin API, dashboard and ``/metrics``.

State lives in typed ``web.AppKey`` slots. The store, the coordinator and the round ticker start
in a ``cleanup_ctx`` and stop in reverse order; on shutdown every worker connection is closed
with 1001 before the store is drained, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from .aggregation import single_threaded_blas
from .api import add_bundle_routes
from .api.wiring import install as install_operator
from .coordinator import Coordinator, TaskConfig
from .settings import Settings
from .storage import AsyncStore, ConflictError, StorageError
from .transport import WORKER_PATH, SchemaValidator, WorkerEndpoint

__all__ = [
    "COORDINATOR",
    "ENDPOINT",
    "SETTINGS",
    "STORE",
    "make_app",
    "open_store",
]

log = logging.getLogger("dandelion.app")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", AsyncStore)
COORDINATOR = web.AppKey("coordinator", Coordinator)
ENDPOINT = web.AppKey("endpoint", WorkerEndpoint)


def open_store(db: str) -> AsyncStore:
    """The state at ``db``: the embedded SQLite file at that path (the default), or the
    PostgreSQL database of a ``postgresql://`` URL."""
    from .storage.location import open_state

    return AsyncStore(lambda: open_state(db, command="serve"))


def make_app(
    settings: Settings,
    *,
    store_factory: Callable[[], AsyncStore] | None = None,
    on_coordinator: Callable[[Coordinator], None] | None = None,
    tasks: Sequence[TaskConfig] = (),
) -> web.Application:
    """Build the application. ``on_coordinator`` sees the coordinator before it starts;
    ``tasks`` are created at start-up unless a task of the same name exists."""
    app = web.Application()
    app[SETTINGS] = settings
    validator = SchemaValidator()
    operator = install_operator(app, settings)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        single_threaded_blas()
        store = store_factory() if store_factory else open_store(settings.db)
        app[STORE] = store
        cluster = None
        if settings.cluster:  # one shard of a cluster (dandelion.cluster.shards)
            from .cluster import connect
            from .cluster.shards import ClusterRounds, shard_name

            cluster = await connect(settings.cluster)
            rounds = ClusterRounds(cluster, shard_name(), lease_s=settings.leader_lease_s)
            coordinator = Coordinator(store, settings, coordination=rounds)
        else:
            coordinator = Coordinator(store, settings)
        app[COORDINATOR] = coordinator
        endpoint = WorkerEndpoint(coordinator, settings, validator)
        app[ENDPOINT] = endpoint
        if settings.cluster:
            rounds.connections = endpoint.open_connections  # published for the others' figures
        operator.start(store, coordinator, endpoint)
        if on_coordinator is not None:
            on_coordinator(coordinator)
        await coordinator.start()
        for config in tasks:
            if config.name not in coordinator.tasks:
                try:
                    await coordinator.add_task(config)
                except ConflictError:  # another shard of the cluster made it meanwhile
                    await coordinator.refresh_tasks()
        loop = asyncio.get_running_loop()
        background = [
            loop.create_task(_tick_forever(coordinator, settings)),
            loop.create_task(endpoint.watch()),
        ]
        yield
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await endpoint.close_all()
        await coordinator.close()
        await store.close()
        if cluster is not None:
            await cluster.aclose()

    async def handle_ws(request: web.Request) -> web.StreamResponse:
        return await request.app[ENDPOINT].handle(request)

    async def health(request: web.Request) -> web.Response:
        """Liveness: status, tasks, and the worker connections open now (the endpoint's
        registry may still hold closed ones until they are collected: they are not counted)."""
        from .api.strict_json import dumps

        coordinator = request.app[COORDINATOR]
        failure = request.app[STORE].failure
        body: dict[str, object] = {
            "status": "degraded" if failure else "ok",
            "tasks": len(coordinator.tasks),
            "connections": request.app[ENDPOINT].open_connections(),
        }
        cluster = coordinator.coordination.describe()
        if cluster is not None:
            body["cluster"] = cluster  # this shard's name, and the tasks it leads
        if failure:
            body["storage"] = f"not writable: {failure}"
        return web.json_response(body, status=503 if failure else 200, dumps=dumps)

    async def on_shutdown(app: web.Application) -> None:
        # Reports waiting for a checkpoint that will not come are let go first, so that every
        # connection's handler can return before the server waits for them.
        if COORDINATOR in app:
            app[COORDINATOR].release_waiting()
        if ENDPOINT in app:
            await app[ENDPOINT].close_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get(WORKER_PATH, handle_ws)
    app.router.add_get("/healthz", health)
    add_bundle_routes(app, settings.bundle_dir)
    return app


async def _tick_forever(coordinator: Coordinator, settings: Settings) -> None:
    while True:
        try:
            await coordinator.tick()
        except StorageError:
            pass  # the store logged it; rounds open again once writes succeed
        except Exception:  # a failing tick must not stop rounds for good
            log.exception("round tick failed")
        await asyncio.sleep(settings.tick_s)
