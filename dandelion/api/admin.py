"""The admin API, under ``/api/v1/`` (every route needs a bearer token; see ``auth.py``).

    GET  /api/v1/tasks?all=true                 tasks, a line each (archived ones with all=true)
    POST /api/v1/tasks                          create one (a task file's content: JSON, or TOML
                                                with Content-Type application/toml)
    GET  /api/v1/tasks/{name}                   configuration, status, privacy, recent rounds
    PUT  /api/v1/tasks/{name}                   edit it: the task file's new content, as for
                                                POST; the next round opens with it
    POST /api/v1/tasks/{name}/pause|resume|archive  change its status
    GET  /api/v1/tasks/{name}/history           its log and every config version
    GET  /api/v1/tasks/{name}/rounds?limit=N    rounds (training and evaluation), newest first
    GET  /api/v1/tasks/{name}/evaluations?limit=N  evaluation results, newest first
    GET  /api/v1/tasks/{name}/models            model versions
    GET  /api/v1/tasks/{name}/models/{version}  one version's parameters (float32 LE), or `latest`
    GET  /api/v1/tasks/{name}/privacy           the privacy ledger
    GET  /api/v1/participation                  the funnel and its time series
    GET  /api/v1/dashboard                      everything the dashboard shows, with its charts
    GET  /api/v1/stream                         the same, pushed as server-sent events

What a route may show of a round is decided in one place, ``stats.round_figures`` and
``stats.model_figures``, the same for the dashboard: counts of workers below ``monitor_k`` are
``null``, a round with fewer than k reports shows no metrics and no duration (nor does the model
version it made), and every time is rounded down to ``monitor_bucket_s``; an evaluation round's
result, ``stats.evaluation_figures``, is withheld below k the same way. Every body is strict
JSON (``strict_json``: non-finite figures are ``null``). docs/openapi.json describes every
route; errors have the one shape of ``errors.py``.

Edits and status changes go through the coordinator (``Coordinator.edit_task``,
``change_status``; the rules are ``coordinator/taskchanges.py``'s), so they apply to the live
coordinator at once; a refused one answers 409 naming the field.

ε is never shown alone: a DP task's ``privacy`` (task detail, privacy ledger) and each row of
the task list carry ``guarantee`` — ε with its δ, mechanism, unit of privacy, neighbouring
relation and assumption (``dandelion.privacy.guarantee``, via ``tasks_cli``). They are outputs of
the mechanism, not counts of workers, so the k threshold does not apply to them.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

from aiohttp import web

from ..coordinator import ACTIONS, Coordinator, TaskChangeError, TaskConfig, TaskConfigError
from ..settings import Settings
from ..storage import AsyncStore, ConflictError, StateStore
from ..tasks_cli import describe, history, task_rows
from .auth import ADMIN
from .errors import ApiError
from .stats import (
    SnapshotCache,
    bucket,
    evaluation_figures,
    model_figures,
    model_metrics,
    open_round,
    round_figures,
)
from .strict_json import dumps

__all__ = ["AdminContext", "add_admin_routes"]

API = "/api/v1"
_MAX_TASK_BYTES = 256 * 1024
_RECENT_ROUNDS = 10
_MAX_VERSION = 2**53 - 1  # as the wire contract's model_version (schemas/README.md)


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


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


def _waiting(ctx: AdminContext, name: str) -> str | None:
    """Why the task's open round still waits, in words (None without an open round)."""
    coordinator = ctx.coordinator
    if name not in coordinator.tasks:
        return None
    return coordinator.round_waiting(name, ctx.settings.monitor_k)


async def _task_or_404(ctx: AdminContext, name: str) -> dict[str, Any]:
    """The task as the API shows it; raises ApiError 404 when there is none."""
    k, width = ctx.settings.monitor_k, ctx.settings.monitor_bucket_s

    def read(s: StateStore) -> dict[str, Any] | None:
        info: dict[str, Any] | None = describe(s, name, rounds_shown=0, evaluations_shown=0)
        if info is None:
            return None
        latest = s.latest_model_version(name)
        made_by = s.get_round(name, latest.round) if latest is not None and latest.round else None
        info["created_at"] = bucket(info["created_at"], width)
        if latest is not None:
            info["model_metrics"] = model_metrics(latest.metrics, made_by, k)
        info["recent_rounds"] = [
            round_figures(r, k, width) for r in s.list_rounds(name, _RECENT_ROUNDS)
        ]
        info["evaluations"] = [
            evaluation_figures(e, k, width) for e in s.list_evaluations(name, _RECENT_ROUNDS)
        ]
        return info

    info = await ctx.store.read(read)
    if info is None:
        raise ApiError(404, f"no task named {name!r}")
    info["waiting"] = _waiting(ctx, name)
    info["open_round"] = open_round(ctx.coordinator, name, k)
    return info


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false")
    if raw not in ("true", "false"):
        raise ApiError(400, f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def _reason(request: web.Request, what: str) -> str:
    """Who changed the task and why: ``what`` by the token's name, and the ``reason`` given."""
    said = request.query.get("reason", "")
    if len(said) > 500:
        raise ApiError(400, "reason is at most 500 characters")
    by = f"{what} through the admin API by {request[ADMIN]}"
    return f"{by}: {said}" if said else by


async def list_tasks(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    archived = _flag(request, "all")
    rows = await ctx.store.read(lambda s: task_rows(s, archived=archived))
    for row in rows:
        row["waiting"] = _waiting(ctx, row["name"])
    return _json({"tasks": rows})


async def _task_config(request: web.Request) -> TaskConfig:
    """The task file in the request's body. Raises ApiError 400, 413, 415, 422."""
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
        return TaskConfig.from_dict(raw)
    except (TaskConfigError, ValueError, KeyError, TypeError) as exc:
        raise ApiError(422, f"invalid task: {exc}") from None


async def create_task(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    config = await _task_config(request)
    if config.name in ctx.coordinator.tasks:
        raise ApiError(409, f"a task named {config.name!r} exists already")
    try:
        await ctx.coordinator.add_task(config)
    except ConflictError:
        raise ApiError(409, f"a task named {config.name!r} exists already") from None
    except TaskConfigError as exc:  # a task this coordinator cannot run
        raise ApiError(422, f"invalid task: {exc}") from None
    info = await _task_or_404(ctx, config.name)
    return _json(info, status=201)


async def show_task(request: web.Request) -> web.Response:
    return _json(await _task_or_404(_ctx(request), request.match_info["name"]))


async def edit_task(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    allow = _flag(request, "allow_privacy_change")
    reason = _reason(request, "edit")
    await _task_or_404(ctx, name)
    config = await _task_config(request)
    try:
        await ctx.coordinator.edit_task(name, config, reason=reason, allow_privacy_change=allow)
    except TaskChangeError as exc:
        raise ApiError(409, str(exc)) from None
    except KeyError:
        raise ApiError(404, f"no task named {name!r}") from None
    return _json(await _task_or_404(ctx, name))


async def change_status(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name, action = request.match_info["name"], request.match_info["action"]
    if action not in ACTIONS:
        raise ApiError(404, f"no action {action!r}: {', '.join(ACTIONS)}")
    reason = _reason(request, action)
    await _task_or_404(ctx, name)
    try:
        await ctx.coordinator.change_status(name, action, reason=reason)
    except TaskChangeError as exc:
        raise ApiError(409, str(exc)) from None
    except KeyError:
        raise ApiError(404, f"no task named {name!r}") from None
    return _json(await _task_or_404(ctx, name))


async def task_history(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name, width = request.match_info["name"], ctx.settings.monitor_bucket_s
    info = await ctx.store.read(lambda s: history(s, name))
    if info is None:
        raise ApiError(404, f"no task named {name!r}")
    for entry in info["changes"]:
        entry["at"] = bucket(entry["at"], width)
    for entry in info["configs"]:
        entry["created_at"] = bucket(entry["created_at"], width)
    return _json(info)


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
    return _json({"task": name, "rounds": [round_figures(r, k, width) for r in rounds]})


async def list_evaluations(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    await _task_or_404(ctx, name)
    limit = _limit(request, 100, 1000)
    found = await ctx.store.read(lambda s: s.list_evaluations(name, limit))
    k, width = ctx.settings.monitor_k, ctx.settings.monitor_bucket_s
    return _json({"task": name, "evaluations": [evaluation_figures(e, k, width) for e in found]})


async def list_models(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    name = request.match_info["name"]
    await _task_or_404(ctx, name)
    k, width = ctx.settings.monitor_k, ctx.settings.monitor_bucket_s

    def read(s: StateStore) -> list[dict[str, Any]]:
        rows = []
        for v in s.list_model_versions(name):
            made_by = s.get_round(name, v.round) if v.round else None
            row = model_figures(v, made_by, k, width)
            row["url"] = f"{API}/tasks/{name}/models/{v.version}"
            rows.append(row)
        return rows

    return _json({"task": name, "models": await ctx.store.read(read)})


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
            number = -1
        if not 0 <= number <= _MAX_VERSION:
            raise ApiError(
                400, f"a model version is an integer in [0, 2^53 - 1] or 'latest', not {raw!r}"
            )
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
    return _json(
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
                    "kind": e.kind,
                }
                for e in entries
            ],
        }
    )


async def participation(request: web.Request) -> web.Response:
    snapshot = await _ctx(request).snapshots.get()
    keys = ("as_of", "k", "bucket_s", "window_s", "funnel", "series")
    return _json({key: snapshot[key] for key in keys})


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API}/tasks", list_tasks)
    r.add_post(f"{API}/tasks", create_task)
    r.add_get(f"{API}/tasks/{{name}}", show_task)
    r.add_put(f"{API}/tasks/{{name}}", edit_task)
    r.add_get(f"{API}/tasks/{{name}}/history", task_history)
    r.add_post(f"{API}/tasks/{{name}}/{{action}}", change_status)
    r.add_get(f"{API}/tasks/{{name}}/rounds", list_rounds)
    r.add_get(f"{API}/tasks/{{name}}/evaluations", list_evaluations)
    r.add_get(f"{API}/tasks/{{name}}/models", list_models)
    r.add_get(f"{API}/tasks/{{name}}/models/{{version}}", download_model)
    r.add_get(f"{API}/tasks/{{name}}/privacy", privacy_ledger)
    r.add_get(f"{API}/participation", participation)
