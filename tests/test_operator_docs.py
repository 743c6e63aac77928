"""The OpenAPI description and the Grafana dashboard say what the coordinator really serves."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from dandelion.api.auth import hash_token, new_token

from .conftest import LiveFactory, small_task

ROOT = Path(__file__).resolve().parent.parent


async def test_openapi_lists_exactly_the_admin_and_public_model_routes(live: LiveFactory) -> None:
    server = await live()
    spec = json.loads((ROOT / "docs" / "openapi.json").read_text())
    documented = {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = set()
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if path.startswith(("/api/", "/metrics", "/models/")) and route.method != "HEAD":
            served.add((path, route.method))
    assert documented == served
    assert spec["security"] == [{"bearer": []}]


async def test_grafana_dashboard_queries_metrics_that_exist(live: LiveFactory) -> None:
    server = await live(monitor_k=2)
    await server.coordinator.add_task(small_task())
    token = new_token()
    digest = hash_token(token)
    await server.store.write(lambda s: s.add_admin_token("t", digest, time.time()))
    http_url = server.url.replace("ws://", "http://").removesuffix("/ws")
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as http, http.get(http_url + "/metrics") as resp:
        text = await resp.text()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    # Families that only have samples once data exists (absent below k, or before a round).
    names |= {
        "dandelion_connected_workers",
        "dandelion_rounds_total",
        "dandelion_round_reports_total",
        "dandelion_round_duration_seconds_bucket",
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dandelion.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        for metric in re.findall(r"\bdandelion_[a-z_]+", expr):
            assert metric in names, (metric, expr)
