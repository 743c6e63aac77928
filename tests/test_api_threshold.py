"""The k threshold on every route of docs/openapi.json: after rounds of fewer than k reports,
no route shows a figure of them — no loss, accuracy or norm, no count below k, no duration, no
time finer than the bucket. The same walk with k lowered to the rounds' size finds the figures:
the check can fail."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Live, LiveFactory, RawClient, small_task
from .test_admin_api import _http, _token
from .test_coordinator_live import assigned, report

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "docs" / "openapi.json").read_text())
K = 10  # the default monitor_k; the rounds below have 2 reports each
BUCKET = 60.0  # the default monitor_bucket_s
#: Keys whose values count workers or their events.
COUNT_KEYS = frozenset(
    {
        "assigned",
        "reported",
        "rejected",
        "dropped",
        "opted_in",
        "connected_now",
        "checked_in",
        "selected",
        "opted_out",
        "connected",
    }
)
#: /metrics families that do not count workers: rounds, versions, ε.
NOT_WORKER_FAMILIES = frozenset(
    {"dandelion_rounds", "dandelion_model_version", "dandelion_epsilon_spent"}
)


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity and numbers that overflow to infinity."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"not strict JSON: {literal} overflows")
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite_float)


@dataclass
class Answer:
    method: str
    path: str
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


async def _read_first_event(resp: aiohttp.ClientResponse) -> bytes:
    """The data of the first server-sent event of a stream that never ends by itself."""
    lines: list[bytes] = []
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if not line and lines:
            break
        if line.startswith(b"data: "):
            lines.append(line.removeprefix(b"data: "))
    return b"\n".join(lines)


async def every_route(server: Live, token: str, created: dict[str, Any]) -> list[Answer]:
    """One answer of every operation in docs/openapi.json, path parameters filled from the
    running state: every task name, every model version and ``latest``, pause and resume (and
    stop, on the task ``created`` makes through ``POST /api/v1/tasks``)."""
    base = _http(server)
    auth = {"Authorization": f"Bearer {token}"}
    answers: list[Answer] = []
    async with aiohttp.ClientSession(headers=auth) as http:

        async def call(method: str, path: str, **kwargs: Any) -> Answer:
            async with http.request(method, base + path, **kwargs) as resp:
                if resp.content_type == "text/event-stream":
                    body = await asyncio.wait_for(_read_first_event(resp), 10)
                else:
                    body = await resp.read()
                answer = Answer(method, path, resp.status, resp.content_type, body)
                answer.headers = dict(resp.headers)
            answers.append(answer)
            return answer

        async def names() -> list[str]:
            listed = strict_loads((await call("GET", "/api/v1/tasks")).body)
            return [t["name"] for t in listed["tasks"]]

        answered: set[tuple[str, str]] = set()
        for path, item in SPEC["paths"].items():
            for method in (m for m in item if m != "parameters"):
                params = set(re.findall(r"{(\w+)}", path))
                assert params <= {"name", "action", "version"}, f"teach the walk {path}"
                before = len(answers)
                if method == "post" and not params:
                    body = json.dumps(created)
                    headers = {"Content-Type": "application/json"}
                    await call("POST", path, data=body, headers=headers)
                elif not params:
                    await call(method.upper(), path)
                for name in await names() if params else []:
                    at = path.replace("{name}", name)
                    if "{action}" in at:
                        actions = ["pause", "resume"] + (
                            ["stop"] if name == created["name"] else []
                        )
                        for action in actions:
                            await call("POST", at.replace("{action}", action))
                    elif "{version}" in at:
                        listed = strict_loads(
                            (await call("GET", f"/api/v1/tasks/{name}/models")).body
                        )
                        for version in [*(m["version"] for m in listed["models"]), "latest"]:
                            await call("GET", at.replace("{version}", str(version)))
                    else:
                        await call(method.upper(), at)
                shape = re.compile(re.sub(r"{\w+}", "[^/]+", path))
                if any(
                    a.method == method.upper() and shape.fullmatch(a.path) for a in answers[before:]
                ):
                    answered.add((method, path))
    documented = {(m, p) for p, item in SPEC["paths"].items() for m in item if m != "parameters"}
    assert answered == documented  # every operation was called at least once
    return answers


@dataclass
class Figures:
    """What must not appear: the distinctive metric values of the small rounds."""

    values: set[float]
    threshold: int = K
    bucket_s: float = BUCKET
    since: float = 0.0
    until: float = math.inf

    def findings(self, value: Any, where: str = "", key: str = "") -> list[tuple[str, str]]:
        """Every figure of the small rounds in ``value``: (kind, where) pairs."""
        found: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for k, v in value.items():
                found += self.findings(v, f"{where}.{k}", str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                # A list under a counting key (a series) holds counts too.
                found += self.findings(v, f"{where}[{i}]", key)
        elif isinstance(value, str):
            for v in self.values:
                if f">{v:.3g}<" in value:  # a bar's <title> or a label in an SVG chart
                    found.append(("figure", f"{where} says {v:.3g}"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found += self.number(float(value), where, key)
        return found

    def number(self, x: float, where: str, key: str = "") -> list[tuple[str, str]]:
        found = []
        if any(math.isclose(x, v, rel_tol=1e-6) for v in self.values):
            found.append(("figure", f"{where} = {x}"))
        if key in COUNT_KEYS and 0 <= x < self.threshold and x == int(x):
            found.append(("count", f"{where} = {x}"))
        if key == "duration_s":
            found.append(("duration", f"{where} = {x}"))
        if self.since <= x <= self.until and x % self.bucket_s != 0:
            found.append(("time", f"{where} = {x}"))
        return found

    def in_metrics(self, text: str) -> list[tuple[str, str]]:
        found = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                where = f"/metrics {s.name}{s.labels}"
                found += self.number(s.value, where)
                if family.name == "dandelion_round_duration_seconds" and s.value > 0:
                    found.append(("duration", where))
                counts = family.name not in NOT_WORKER_FAMILIES
                if counts and 0 < s.value < self.threshold:
                    found.append(("count", f"{where} = {s.value}"))
        return found

    def in_answers(self, answers: list[Answer]) -> list[tuple[str, str]]:
        found = []
        for a in answers:
            where = f"{a.method} {a.path}"
            for name, header in a.headers.items():
                if name.lower().startswith("x-dandelion") and header.isdigit():
                    found += self.number(float(header), f"{where} {name}")
            if a.content_type == "application/json" or a.content_type == "text/event-stream":
                found += self.findings(strict_loads(a.body), where)
            elif a.content_type == "text/plain":
                found += self.in_metrics(a.body.decode())
        return found


async def _small_rounds(live: LiveFactory, k: int) -> tuple[Live, str, Figures]:
    """Two rounds of two reports each (fewer than K), with distinctive metrics and norms."""
    since = time.time() - 3600
    server = await live(monitor_k=k, dashboard_refresh_s=0.1)
    await server.coordinator.add_task(small_task(goal=2, min_reports=2, max_rounds=2))
    token = await _token(server)
    sent = {"a": (0.8137, 0.3719, 0.0123), "b": (0.6029, 0.2953, 0.0456)}
    clients: dict[str, RawClient] = {}
    for who in sent:
        clients[who] = await RawClient.connect(server.url)
        assert (await clients[who].hello(f"worker-{who * 8}"))["type"] == "welcome"
    try:
        for n in (1, 2):
            tasks = {who: await assigned(clients[who]) for who in sent}
            # Sent together: each ack waits for the round's commit, which needs both.
            acks = await asyncio.gather(
                *(
                    report(
                        clients[who],
                        tasks[who],
                        np.full(11, step * n),
                        metrics={"loss": loss * n, "accuracy": accuracy / n},
                    )
                    for who, (loss, accuracy, step) in sent.items()
                )
            )
            assert [a["type"] for a in acks] == ["ack", "ack"], acks
            await server.wait_rounds(n)
    finally:
        for client in clients.values():
            await client.close()
    await asyncio.sleep(0.3)  # a fresh snapshot (dashboard_refresh_s = 0.1)
    rounds = await server.store.read(lambda s: s.list_rounds("t1"))
    values = {float(v) for r in rounds for v in r.metrics.values() if v not in (0, 0.5, 1)}
    values |= {v for loss, accuracy, _ in sent.values() for v in (loss, accuracy)}
    assert len(values) >= 8, values  # loss, accuracy, mean norm of each round, and more
    return server, token, Figures(values, since=since, until=time.time() + 60)


async def test_no_route_shows_a_figure_of_a_round_below_k(live: LiveFactory) -> None:
    server, token, figures = await _small_rounds(live, K)
    answers = await every_route(server, token, small_task("probe").to_dict())
    assert len(answers) >= 20
    assert all(a.status < 500 for a in answers), [(a.path, a.status) for a in answers]
    assert figures.in_answers(answers) == []
    # The walk did see the rounds and their (bucketed) times: it checked something.
    listing = next(a for a in answers if a.path == "/api/v1/tasks/t1/rounds")
    completed = [r for r in strict_loads(listing.body)["rounds"] if r["status"] == "completed"]
    assert len(completed) == 2
    assert all(r["closed_at"] % BUCKET == 0 and r["closed_at"] >= figures.since for r in completed)
    assert all(r["reported"] is None and r["metrics"] == {} for r in completed)


async def test_the_walk_finds_the_figures_once_k_lets_them_through(live: LiveFactory) -> None:
    server, token, figures = await _small_rounds(live, 2)  # k = 2: the rounds count
    answers = await every_route(server, token, small_task("probe").to_dict())
    kinds = {kind for kind, _ in figures.in_answers(answers)}
    assert {"figure", "count", "duration"} <= kinds, kinds
    # Times are bucketed whatever k is; the check finds the exact ones in the state file.
    rounds = await server.store.read(lambda s: s.list_rounds("t1"))
    assert "time" in {kind for kind, _ in figures.findings([asdict(r) for r in rounds])}
