"""The operators' dashboard: a static page at ``/dashboard`` and its data, live.

The page holds no data; it asks ``/api/v1/stream`` (server-sent events, with the bearer token)
for snapshots and draws what arrives. Charts are SVG made here (``charts.py``) from the same
snapshot, so the page needs no chart library and nothing from a CDN. One snapshot is computed
per ``dashboard_refresh_s`` and shared by every open dashboard (``stats.SnapshotCache``).

What a snapshot may show is decided by ``stats.py`` (withheld below k, bucketed times); it is
written as strict JSON (``strict_json``): no NaN or Infinity reaches a browser's ``JSON.parse``.
Each task with an open round carries ``waiting``, the coordinator's words for why it is still
open, which the page shows as a line of its own. Each DP task carries ``guarantee``
(``dandelion.privacy.guarantee``): its ε with δ, mechanism, unit of privacy, neighbouring
relation and assumption; the page shows its ``statement`` beside the ε spent, and the ε chart
names δ. A task with evaluation rounds carries ``evaluations`` (``stats.evaluation_figures``):
the page draws its held-out loss and accuracy by model version and lists them beside the
training rounds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from .charts import bar_chart, line_chart
from .errors import ApiError
from .stats import FUNNEL
from .strict_json import dumps

__all__ = ["add_dashboard_routes", "charts_for"]

STATIC = Path(__file__).parent / "static"
_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
_SERIES_SHOWN = ("checked_in", "selected", "reported", "dropped", "opted_out")
_KEEPALIVE_S = 15.0


def _width(seconds: float) -> str:
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"


def charts_for(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's SVG charts for one snapshot."""
    k = snapshot["k"]
    note = f"gaps: fewer than {k}"
    series = snapshot["series"]
    funnel = line_chart(
        f"Participation per {_width(snapshot['bucket_s'])}",
        series["buckets"],
        {name.replace("_", " "): series[name] for name in _SERIES_SHOWN},
        times=True,
        note=note,
        width=1100,
        height=220,
    )
    tasks: dict[str, dict[str, str]] = {}
    for task in snapshot["tasks"]:
        rounds = [r for r in task["rounds"] if r["status"] != "open"]
        labels = [str(r["round"]) for r in rounds]
        numbers = [float(r["round"]) for r in rounds]
        charts = {
            "reports": bar_chart(
                "Reports per round (tick: goal)",
                labels,
                [r["reported"] for r in rounds],
                target=[float(r["goal"]) for r in rounds],
                note=f"hatched: fewer than {k}",
            ),
            "duration": bar_chart("Round duration, s", labels, [r["duration_s"] for r in rounds]),
            "quality": line_chart(
                "Loss and accuracy (local data, before training)",
                numbers,
                {"loss": [r["loss"] for r in rounds], "accuracy": [r["accuracy"] for r in rounds]},
                note=note,
            ),
            "clip": line_chart(
                "Clip norm", numbers, {"clip norm": [r["clip_norm"] for r in rounds]}, note=note
            ),
        }
        evaluations = task.get("evaluations") or []
        if evaluations:
            series = {"loss": [e["loss"] for e in evaluations]}
            accuracy = [e["accuracy"] for e in evaluations]
            if any(a is not None for a in accuracy):  # a regression has none
                series["accuracy"] = accuracy
            charts["evaluation"] = line_chart(
                "Held-out "
                + ("loss and accuracy" if "accuracy" in series else "loss")
                + " (evaluation rounds, by model version)",
                [float(e["model_version"]) for e in evaluations],
                series,
                note=f"gaps: withheld (fewer than {k})",
            )
        if task["epsilon_budget"] is not None:
            charts["epsilon"] = line_chart(
                f"ε spent (δ = {task['delta']:.1e}; budget {task['epsilon_budget']:g})",
                numbers,
                {"ε": [r["epsilon"] for r in rounds]},
            )
        tasks[task["name"]] = charts
    return {"funnel": funnel, "tasks": tasks}


class _Rendered:
    """The snapshot with its charts, re-rendered only when the snapshot changed."""

    def __init__(self) -> None:
        self.version = -1
        self.body = b""

    def get(self, version: int, snapshot: dict[str, Any]) -> bytes:
        if version != self.version:
            payload = {**snapshot, "funnel_order": FUNNEL, "charts": charts_for(snapshot)}
            self.body = dumps(payload, separators=(",", ":")).encode()
            self.version = version
        return self.body


RENDERED: web.AppKey[_Rendered] = web.AppKey("dandelion_dashboard", _Rendered)


def add_dashboard_routes(app: web.Application, snapshots: Any) -> None:
    """``snapshots()`` returns the app's SnapshotCache (made when the app starts)."""
    app[RENDERED] = _Rendered()

    async def current(request: web.Request) -> bytes:
        cache = snapshots()
        snapshot = await cache.get()
        body: bytes = request.app[RENDERED].get(cache.version, snapshot)
        return body

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC / "dashboard.html",
            headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"},
        )

    async def static(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in _FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(
            STATIC / name, headers={"Content-Type": _FILES[name], "Cache-Control": "no-cache"}
        )

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=await current(request), content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        cache = snapshots()
        if cache is None:
            raise ApiError(503, "the coordinator is starting")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        await response.prepare(request)
        sent, quiet = -1, 0.0
        refresh = cache.settings.dashboard_refresh_s
        try:
            while True:
                body = await current(request)
                if cache.version != sent:
                    await response.write(b"event: snapshot\ndata: " + body + b"\n\n")
                    sent, quiet = cache.version, 0.0
                elif quiet >= _KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0.0
                await asyncio.sleep(refresh)
                quiet += refresh
        except ConnectionResetError:  # the dashboard was closed
            pass
        return response

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/{name}", static)
    app.router.add_get("/api/v1/dashboard", data)
    app.router.add_get("/api/v1/stream", stream)
