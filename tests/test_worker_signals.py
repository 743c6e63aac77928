"""Browsing signals as pages and the extension hand them over: parsed defensively, turned into
the same examples as synthetic histories, and never sent anywhere."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from browser_worker.host import MemoryConnection, MemoryHost
from browser_worker.worker import Worker, WorkerConfig
from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, MemoryStore
from dandelion.taskspec.objectives.revisit import FeatureConfig, VisitRecord, extract_examples
from dandelion.taskspec.registry import examples_for
from dandelion.taskspec.signals import MAX_VISITS, SignalsError, visits_from_signals
from dandelion.taskspec.synthetic import SyntheticConfig, generate_history

from .test_worker_memory_host import _serve

DAY_MS = 86_400_000


def _visit(url: str, when_ms: float, **extra: object) -> dict[str, object]:
    return {"url": url, "title": "A title", "visitTime": when_ms, **extra}


def test_signals_skip_what_is_not_a_visit_a_user_chose() -> None:
    now = 1_795_000_000_000
    visits = visits_from_signals(
        {
            "visits": [
                _visit("https://news.example/a", now - 3 * DAY_MS, transition="typed", tabId=4),
                _visit("chrome://settings", now - DAY_MS),
                _visit("file:///home/me/notes.txt", now - DAY_MS),
                _visit("https://ads.example/frame", now - DAY_MS, transition="auto_subframe"),
                _visit("https://mail.example/", float("nan")),
                _visit("https://mail.example/", -5),
                "not an object",
                {"url": 42, "visitTime": now},
                _visit("https://mail.example/", now - 2 * DAY_MS, transition="weird"),
            ],
            "tzOffsetMin": 60,
        }
    )
    assert [v.url for v in visits] == ["https://news.example/a", "https://mail.example/"]
    first, second = visits
    assert first.transition == "typed" and first.tab_id == 4 and first.tz_offset_min == 60
    assert first.visit_time == (now - 3 * DAY_MS) / 1000
    assert second.transition == "other" and second.tab_id is None


def test_signals_keep_the_newest_visits_up_to_the_cap() -> None:
    raw = [_visit(f"https://s{i % 50}.example/", 1e12 + i * 1000) for i in range(MAX_VISITS + 7)]
    visits = visits_from_signals(json.dumps({"visits": raw[::-1]}))
    assert len(visits) == MAX_VISITS
    assert visits[0].visit_time == (1e12 + 7 * 1000) / 1000  # the 7 oldest went
    assert all(a.visit_time <= b.visit_time for a, b in itertools.pairwise(visits))


@pytest.mark.parametrize("bad", ['"text"', "[]", '{"visits": {}}', "null"])
def test_malformed_signals_are_a_clear_error(bad: str) -> None:
    with pytest.raises(SignalsError, match="visits"):
        visits_from_signals(bad)


def test_signals_and_synthetic_histories_share_one_feature_pipeline() -> None:
    end = 1_795_000_000.0
    history = generate_history(5, 21.0, SyntheticConfig(), end - 21 * 86400)
    signals = {
        "visits": [
            {
                "url": v.url,
                "title": v.title,
                "visitTime": v.visit_time * 1000,
                "transition": v.transition,
            }
            for v in history
        ],
        "tzOffsetMin": history[0].tz_offset_min,
    }
    features = {"num_buckets": 32, "horizon_days": 7.0}
    via_signals = examples_for(visits_from_signals(signals), "revisit_7d", features, end)
    direct = extract_examples(history, FeatureConfig.from_dict(features), end)
    assert len(via_signals) > 50
    # The same examples; times went through milliseconds and back, so values agree to 1e-9.
    assert [(e.indices, e.label) for e in via_signals] == [(e.indices, e.label) for e in direct]
    for a, b in zip(via_signals, direct, strict=True):
        assert a.values == pytest.approx(b.values, rel=1e-9, abs=1e-9)
    assert examples_for([], "unknown_objective", features, end) == []


async def test_no_url_title_or_time_leaves_the_worker() -> None:
    """Everything the worker sends during real rounds, searched for what it was trained on."""
    now = time.time()
    secret_hosts = [f"secret-host-{i}.example" for i in range(5)]
    visits = [
        VisitRecord(
            url=f"https://{secret_hosts[i % 5]}/private/path-{i}",
            title=f"Very private title {i}",
            visit_time=now - 10 * 86400 + i * 3600,
            transition="link",
        )
        for i in range(200)
    ]
    shared = MemoryStore()
    store = AsyncStore(lambda: shared)
    coordinator = Coordinator(store, load_settings(environ={}, overrides={"pace_min_s": 0.01}))
    await coordinator.start()
    await coordinator.add_task(
        TaskConfig.from_dict(
            {
                "name": "revisit",
                "objective": "revisit_7d",
                "features": {"num_buckets": 16, "horizon_days": 7.0},
                "model": {"kind": "logreg"},
                "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 8, "clip_norm": 1.0},
                "rounds": {"goal": 1, "min_reports": 1, "deadline_s": 5.0, "max_rounds": 2},
            }
        )
    )
    sent: list[str | bytes] = []

    async def recording_serve(conn: MemoryConnection) -> None:
        original = conn.receive

        async def receive() -> str | bytes:
            data = await original()
            sent.append(data)
            return data

        conn.receive = receive  # type: ignore[method-assign]
        await _serve(coordinator, conn)

    async def ticks() -> None:
        while True:
            await coordinator.tick()
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticks())
    worker = Worker(
        MemoryHost(recording_serve),
        WorkerConfig("memory://"),
        lambda objective, features, at: examples_for(visits, objective, features, at),
    )
    status = await asyncio.wait_for(worker.run(max_updates=2), 20)
    ticker.cancel()
    await coordinator.close()
    await store.close()
    assert status.updates_accepted == 2
    assert any(isinstance(m, bytes) for m in sent)  # the update frames were seen
    blob = b"".join(m if isinstance(m, bytes) else m.encode() for m in sent)
    for needle in [*secret_hosts, "private", "title", "path-", str(int(visits[0].visit_time))]:
        assert needle.encode() not in blob, needle


def test_keys_nothing_reads_are_named_with_the_nearest_known_one() -> None:
    from dandelion.taskspec.registry import load_plugins
    from dandelion.taskspec.signals import unknown_signal_keys

    load_plugins()  # the built-in objectives' own signal types (examples, predict) too
    assert unknown_signal_keys({"visits": [], "examples": [], "tzOffsetMin": 0}) == []
    (line,) = unknown_signal_keys('{"tab": [], "pageTimes": []}')
    assert line.startswith("signals: unknown key 'tab' ignored; did you mean 'tabs'? (known: ")
    assert unknown_signal_keys({"zzzzzz": 1})[0].startswith(
        "signals: unknown key 'zzzzzz' ignored ("
    )
