"""The admin API, under ``/api/v1/`` (every route needs a bearer token; see ``auth.py``).

    GET  /api/v1/tasks                          tasks, a line each
    POST /api/v1/tasks                          create one (a task file's content: JSON, or TOML
                                                with Content-Type application/toml)
    GET  /api/v1/tasks/{name}                   configuration, status, privacy, recent rounds
    POST /api/v1/tasks/{name}/pause|resume|stop change its status
    GET  /api/v1/tasks/{name}/rounds?limit=N    rounds, newest first
    GET  /api/v1/tasks/{name}/models            model versions
    GET  /api/v1/tasks/{name}/models/{version}  one version's parameters (float32 LE), or `latest`
    GET  /api/v1/tasks/{name}/privacy           the privacy ledger
    GET  /api/v1/participation                  the funnel and its time series
    GET  /api/v1/dashboard                      everything the dashboard shows, with its charts
    GET  /api/v1/stream                         the same, pushed as server-sent events

Counts of workers below ``monitor_k`` are ``null`` (see ``stats.py``). docs/openapi.yaml
describes every route; errors have the one shape of ``errors.py``.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from aiohttp import web

from ..coordinator import Coordinator, TaskConfig, TaskConfigError
from ..settings import Settings
from ..storage import AsyncStore, ConflictError
from ..tasks_cli import describe, task_rows
from .auth import ADMIN
from .errors import ApiError
from .stats import SnapshotCache, suppress

__all__ = ["AdminContext", "add_admin_routes"]

API = "/api/v1"
_MAX_TASK_BYTES = 256 * 1024
_TRANSITIONS = {"pause": "paused", "resume": "active", "stop": "stopped"}


class AdminContext:
    """What the routes need, looked up per request (the coordinator exists only once the
    application has started)."""

    def __init__(self, settings: Settings, store: Any, coordinator: Any, snapshots: Any) -> None:
        self.settings = settings
        self._store = store
        self._coordinator = coordinator
        self._snapshots = snapshots

    @property
    def store(self) -> AsyncStore:
        store: AsyncStore = self._store()
        return store

    @property
    def coordinator(self) -> Coordinator:
        coordinator: Coordinator = self._coordinator()
        return coordinator

    @property
    def snapshots(self) -> SnapshotCache:
        cache: SnapshotCache = self._snapshots()
        return cache


CONTEXT: web.AppKey[AdminContext] = web.AppKey("dandelion_admin", AdminContext)


def _ctx(request: web.Request) -> AdminContext:
    return request.app[CONTEXT]


async def _task_or_404(ctx: AdminContext, name: str) -> dict[str, Any]:
    k = ctx.settings.monitor_k
    info: dict[str, Any] | None = await ctx.store.read(lambda s: describe(s, name))
    if info is None:
        raise ApiError(404, f"no task named {name!r}")
    info["recent_rounds"] = [_round_counts(r, k) for r in info["recent_rounds"]]
    return info


def _round_counts(r: dict[str, Any], k: int) -> dict[str, Any]:
    """A round as the API shows it: worker counts below k withheld, and with them the metrics
    (averages over fewer than k workers)."""
    out = dict(r)
    enough = r["reported"] >= k
    for key in ("assigned", "reported", "rejected", "dropped"):
        out[key] = suppress(r[key], k)
    out["metrics"] = r["metrics"] if enough else {}
    out["withheld_below"] = k
    return out


async def list_tasks(request: web.Request) -> web.Response:
    return web.json_response({"tasks": await _ctx(request).store.read(task_rows)})


async def create_task(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    if request.content_length is not None and request.content_length > _MAX_TASK_BYTES:
        raise ApiError(413, f"a task file is at most {_MAX_TASK_BYTES} bytes")
    body = await request.read()
    if len(body) > _MAX_TASK_BYTES:
        raise ApiError(413, f"a task file is at most {_MAX_TASK_BYTES} bytes")
    try:
        text = body.decode()
        if request.content_type in ("application/toml", "text/toml"):
            raw = tomllib.loads(text)
        elif request.content_type == "application/json":
            raw = json.loads(text)
        else:
            raise ApiError(415, "send the task as application/json or application/toml")
    except (UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ApiError(400, f"the task file does not parse: {exc}") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "a task is an object")
    try:
        config = TaskConfig.from_dict(raw)
    except (TaskConfigError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(422, f"invalid task: {exc}") from None
    if config.name in ctx.coordinator.tasks:
        raise ApiError(409, f"a task named {config.name!r} exists already")
    try:
        await ctx.coordinator.add_task(config)
    except ConflictError:
        raise ApiError(409, f"a task named {config.name!r} exists already") from None
    info = await _task_or_404(ctx, config.name)
    return web.json_response(info, status=201)


async def show_task(request: web.Request) -> web.Response:
    return web.json_response(await _task_or_404(_ctx(request), request.match_info["name"]))


async def change_status(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name, action = request.match_info["name"], request.match_info["action"]
    if action not in _TRANSITIONS:
        raise ApiError(404, f"no action {action!r}: pause, resume or stop")
    info = await _task_or_404(ctx, name)
    current, wanted = info["status"], _TRANSITIONS[action]
    if current == "stopped" and wanted != "stopped":
        raise ApiError(409, "a stopped task stays stopped; create a new one")
    if current == "budget_exhausted" and wanted == "active":
        raise ApiError(409, f"the task spent its privacy budget: {info['status_reason']}")
    reason = f"{action} through the admin API by {request[ADMIN]}"
    await ctx.store.write(lambda s: s.set_task_status(name, wanted, reason))
    await ctx.coordinator.refresh_tasks()
    return web.json_response(await _task_or_404(ctx, name))


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {raw!r}") from None
    if not 1 <= value <= most:
        raise ApiError(400, f"limit must be between 1 and {most}")
    return value


async def list_rounds(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    await _task_or_404(ctx, name)
    limit = _limit(request, 100, 1000)
    rounds = await ctx.store.read(lambda s: s.list_rounds(name, limit))
    k, width = ctx.settings.monitor_k, ctx.settings.monitor_bucket_s
    rows = [
        _round_counts(
            {
                "round": r.round,
                "status": r.status,
                "goal": r.goal,
                "model_version": r.model_version,
                "opened_at": r.opened_at // width * width,
                "closed_at": None if r.closed_at is None else r.closed_at // width * width,
                "duration_s": None if r.closed_at is None else round(r.closed_at - r.opened_at, 1),
                "assigned": r.assigned,
                "reported": r.reported,
                "rejected": r.rejected,
                "dropped": r.dropped,
                "metrics": r.metrics,
            },
            k,
        )
        for r in rounds
    ]
    return web.json_response({"task": name, "rounds": rows})


async def list_models(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    await _task_or_404(ctx, name)
    versions = await ctx.store.read(lambda s: s.list_model_versions(name))
    rows = [
        {
            "version": v.version,
            "round": v.round,
            "created_at": v.created_at,
            "bytes": v.size_bytes,
            "metrics": v.metrics,
            "url": f"{API}/tasks/{name}/models/{v.version}",
        }
        for v in versions
    ]
    return web.json_response({"task": name, "models": rows})


async def download_model(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name, raw = request.match_info["name"], request.match_info["version"]
    await _task_or_404(ctx, name)
    if raw == "latest":
        version = await ctx.store.read(lambda s: s.latest_model_version(name))
    else:
        try:
            number = int(raw)
        except ValueError:
            raise ApiError(400, f"a model version is a number or 'latest', not {raw!r}") from None
        version = await ctx.store.read(lambda s: s.get_model_version(name, number))
    if version is None:
        raise ApiError(404, f"task {name!r} has no model version {raw}")
    return web.Response(
        body=version.params,
        content_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-v{version.version}.f32"',
            "X-Dandelion-Dtype": "float32-le",
            "X-Dandelion-Param-Count": str(len(version.params) // 4),
            "X-Dandelion-Model-Version": str(version.version),
        },
    )


async def privacy_ledger(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    info = await _task_or_404(ctx, name)
    entries = await ctx.store.read(lambda s: s.list_ledger(name))
    return web.json_response(
        {
            "task": name,
            "privacy": {k: v for k, v in (info["privacy"] or {}).items() if k != "ledger"} or None,
            "ledger": [
                {
                    "round": e.round,
                    "noise_multiplier": e.noise_multiplier,
                    "sampling_rate": e.sampling_rate,
                    "epsilon": e.epsilon,
                    "delta": e.delta,
                    "accountant": e.accountant,
                    "clip_norm": e.clip_norm,
                    "next_clip_norm": e.next_clip_norm,
                }
                for e in entries
            ],
        }
    )


async def participation(request: web.Request) -> web.Response:
    snapshot = await _ctx(request).snapshots.get()
    keys = ("as_of", "k", "bucket_s", "window_s", "funnel", "series")
    return web.json_response({key: snapshot[key] for key in keys})


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API}/tasks", list_tasks)
    r.add_post(f"{API}/tasks", create_task)
    r.add_get(f"{API}/tasks/{{name}}", show_task)
    r.add_post(f"{API}/tasks/{{name}}/{{action}}", change_status)
    r.add_get(f"{API}/tasks/{{name}}/rounds", list_rounds)
    r.add_get(f"{API}/tasks/{{name}}/models", list_models)
    r.add_get(f"{API}/tasks/{{name}}/models/{{version}}", download_model)
    r.add_get(f"{API}/tasks/{{name}}/privacy", privacy_ledger)
    r.add_get(f"{API}/participation", participation)
