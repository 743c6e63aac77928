"""The dashboard in headless Chromium while a population of workers trains: it fills in, it
changes without a reload, what it shows matches the state file, and no count below k shows."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import RequestLog, poll

WORKERS = 14
K = 10
TOY_TASK = f"""
name = "toy"
objective = "page_examples"
[model]
kind = "logreg"
num_features = 10
[hyper]
learning_rate = 0.5
epochs = 1
batch_size = 4
clip_norm = 1.0
[rounds]
goal = {WORKERS}
over_selection = 1.0
min_reports = {WORKERS}
deadline_s = 20.0
"""

_SHOWN = """() => ({
  funnel: Object.fromEntries([...document.querySelectorAll('.stage')].map(
    (s) => [s.dataset.stage, s.querySelector('.n').textContent])),
  rounds: [...document.querySelectorAll('table.rounds tr[data-round]')]
    .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
  renders: window.__renders ?? 0,
  charts: document.querySelectorAll('svg.chart polyline, svg.chart rect').length,
  live: document.getElementById('live').dataset.state,
  navigations: performance.getEntriesByType('navigation').length,
})"""


def _make_token(db: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dandelion", "token", "create", "dashboard-test", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def _population(url: str, updates: int) -> None:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig
    from dandelion.taskspec.models import Example

    data = [Example((i % 10,), (1.0,), i % 2) for i in range(24)]
    workers = [
        Worker(CPythonHost(), WorkerConfig(url, worker_id=f"emulated-{i:04d}"), lambda *_: data)
        for i in range(WORKERS)
    ]
    await asyncio.gather(*(w.run(max_updates=updates) for w in workers))


def _number(text: str) -> int | None:
    return None if text.startswith("<") else int(text.replace(",", ""))


async def test_dashboard_is_live_matches_the_database_and_withholds_small_counts(
    coordinator: Any, browser: Any, requests: RequestLog, artifacts: Path
) -> None:
    coord = await coordinator(
        TOY_TASK,
        *("--monitor-k", str(K), "--dashboard-refresh-s", "0.3"),
        *("--monitor-bucket-s", "2", "--monitor-window-s", "120"),
    )
    token = _make_token(coord.db)
    context = await browser.new_context(viewport={"width": 1280, "height": 1600})
    context.on("request", requests.record)
    page = await context.new_page()
    await page.goto(f"{coord.http}/dashboard#token={token}")
    assert token not in page.url  # moved out of the address bar at once
    first = await poll(page, f"({_SHOWN})()", lambda s: s["renders"] >= 1, 20, "a first render")
    assert first["live"] == "live"

    population = asyncio.create_task(_population(coord.ws, updates=8))
    seen: list[dict[str, Any]] = []
    while not population.done():
        seen.append(await page.evaluate(f"({_SHOWN})()"))
        await asyncio.sleep(0.3)
    await population
    reported_db = coord.sql("select count(*) from events where event = 'reported'")[0][0]
    assert reported_db == WORKERS * 8
    final = await poll(
        page,
        f"({_SHOWN})()",
        lambda s: _number(s["funnel"]["reported"]) == reported_db,
        20,
        "the dashboard to show every report",
    )
    # Live: several renders over one page load, and the reported count rose in between.
    assert final["navigations"] == 1
    assert final["renders"] >= 3
    # ``None`` is "<k". It counts as one state: "<k" throughout would be a page that never
    # changed (the old ``or None in shown`` let exactly that pass). Counts never go down.
    shown = [_number(s["funnel"]["reported"]) for s in seen]
    assert len(set(shown)) >= 2, shown
    numbers = [v for v in shown if v is not None]
    assert numbers == sorted(numbers), shown

    # What it shows is what the state file says.
    opted_in = coord.sql("select count(*) from consent where state = 'opted_in'")[0][0]
    assert _number(final["funnel"]["opted_in"]) == opted_in == WORKERS
    for stage, event in (("checked_in", "checked_in"), ("selected", "selected")):
        in_db = coord.sql("select count(*) from events where event = ?", event)[0][0]
        assert _number(final["funnel"][stage]) == in_db, stage
    completed = coord.sql(
        "select round, reported from rounds where task = 'toy' and status = 'completed' "
        "order by round desc limit 10"
    )
    assert len(completed) >= 4
    table = {int(row[0]): _number(row[3]) for row in final["rounds"] if row[1] == "completed"}
    assert dict(completed) == {n: table[n] for n, _ in completed}

    # No count below k anywhere on the page: every number shown is >= k or says "<k".
    text = await page.evaluate("document.querySelector('main').innerText")
    for stage in final["funnel"].values():
        assert stage == f"<{K}" or (_number(stage) or 0) >= K, stage
    await poll(  # the workers are gone: fewer than k connected
        page, f"({_SHOWN})()", lambda s: s["funnel"]["connected_now"] == f"<{K}", 20, "<k connected"
    )
    for row in final["rounds"]:
        for cell in (row[3], row[4]):  # reported, dropped
            assert cell == f"<{K}" or int(cell) >= K, row
    assert not re.search(r"\b[1-9] (reported|workers)\b", text)

    assert final["charts"] > 5  # the funnel and round charts are drawn
    await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    await context.close()
    assert requests.outside_loopback() == []
    assert not any("token" in u for u in requests.urls)


DP_TASK = """
name = "toy-dp"
objective = "page_examples"
[model]
kind = "logreg"
num_features = 10
[hyper]
clip_norm = 1.0
[server]
weighting = "uniform"
[rounds]
goal = 10
deadline_s = 20.0
[privacy]
population = 100
noise_multiplier = 1.0
epsilon = 5.0
"""


async def test_the_dashboard_shows_epsilon_with_its_guarantee(
    coordinator: Any, browser: Any, requests: RequestLog
) -> None:
    coord = await coordinator(DP_TASK, "--dashboard-refresh-s", "0.3")
    token = _make_token(coord.db)
    context = await browser.new_context()
    context.on("request", requests.record)
    page = await context.new_page()
    await page.goto(f"{coord.http}/dashboard#token={token}")
    line = await poll(
        page,
        "document.querySelector('.guarantee')?.textContent ?? ''",
        lambda text: text.startswith("Guarantee: "),
        20,
        "the guarantee line",
    )
    # The coordinator's own words, as the API gives them: ε with δ, mechanism, unit, assumption.
    data = await page.evaluate(
        """async (token) => (await (await fetch('/api/v1/dashboard',
             {headers: {Authorization: 'Bearer ' + token}})).json())""",
        token,
    )
    guarantee = next(t for t in data["tasks"] if t["name"] == "toy-dp")["guarantee"]
    assert line == f"Guarantee: {guarantee['statement']}"
    assert line.startswith("Guarantee: ε = 0 at δ = ")
    for words in ("poisson mechanism", "one worker id", "probability q = 0.1", "coin"):
        assert words in line, words
    await context.close()
    assert requests.outside_loopback() == []
