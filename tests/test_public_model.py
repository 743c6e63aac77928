"""The public model endpoint: a task trained by real workers is published without a token at
``GET /models/{task}``, and the worker's ``predict()`` scores signals with what it serves;
caching, ETags and 304, CORS, ``public_model = false``, and the k threshold."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import aiohttp
import numpy as np
import pytest

from browser_worker.predict import params_from_weights, predict
from dandelion.coordinator import TaskConfig, TaskConfigError
from dandelion.taskspec import Example, ModelSpec, parse_signals
from dandelion.taskspec.models import predict_proba

from .conftest import Live, LiveFactory, scaled, small_task
from .test_admin_api import _http
from .test_api_threshold import _small_rounds, strict_loads

F = 6  # input width of the tasks trained here


def page_task(
    name: str, kind: str, *, classes: int = 2, hidden: int = 0, **extra: Any
) -> TaskConfig:
    """A ``page_examples`` task of ``kind``, two reports a round, two rounds."""
    model: dict[str, Any] = {"kind": kind, "num_features": F}
    if hidden:
        model["hidden"] = hidden
    return TaskConfig.from_dict(
        {
            "name": name,
            "objective": "page_examples",
            "features": {"num_classes": classes},
            "model": model,
            "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": 1.0},
            "rounds": {
                "goal": 2,
                "over_selection": 1.0,
                "min_reports": 2,
                "deadline_s": 10.0,
                "max_rounds": 2,
            },
            **extra,
        }
    )


def local_examples(classes: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for n in range(24):
        indices = tuple(sorted(rng.sample(range(F), 3)))
        out.append(Example(indices, tuple(rng.uniform(-1, 1) for _ in indices), n % classes))
    return out


async def train(server: Live, config: TaskConfig, rounds: int = 2) -> None:
    """``config`` trained for ``rounds`` rounds by two real workers (the CPython host)."""
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig

    await server.coordinator.add_task(config)
    classes = max(2, config.model.num_classes)
    workers = [
        Worker(
            CPythonHost(),
            WorkerConfig(server.url, worker_id=f"worker-{i:04d}"),
            lambda *_, seed=i: local_examples(classes, seed),
        )
        for i in range(2)
    ]
    runs = [asyncio.create_task(w.run(max_updates=rounds)) for w in workers]
    await asyncio.wait_for(asyncio.gather(*runs), scaled(60))
    await server.wait_rounds(rounds, timeout=30)


def predict_signals(n: int, seed: int) -> dict[str, Any]:
    """The ``predict`` list of a signals object: ``n`` sparse examples, items ``e0``..."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        indices = sorted(rng.sample(range(F), rng.randint(1, F)))
        values = [rng.uniform(-2, 2) for _ in indices]
        items.append({"indices": indices, "values": values, "item": f"e{i}"})
    return {"predict": items}


async def fetch_model(server: Live, name: str) -> tuple[dict[str, Any], bytes]:
    """The public document of ``name`` and the weights it names, fetched without a token."""
    base = _http(server)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/models/{name}") as resp:
            assert resp.status == 200, await resp.text()
            document = strict_loads(await resp.read())
        async with http.get(base + document["weights"]) as resp:
            assert resp.status == 200, await resp.text()
            weights = await resp.read()
    return document, weights


async def test_a_trained_model_is_public_and_predict_scores_with_it(live: LiveFactory) -> None:
    server = await live(monitor_k=2)  # rounds of two reports may be published
    await train(server, page_task("pages", "softmax", classes=3))
    document, weights = await fetch_model(server, "pages")
    latest = await server.store.read(lambda s: s.latest_model_version("pages"))
    assert latest is not None and latest.version == 2
    assert document["version"] == 2 and document["round"] == 2
    assert document["objective"] == "page_examples"
    assert document["outputs"] == ["class_0", "class_1", "class_2"]
    assert document["model"]["param_count"] == 3 * (F + 1) and document["dtype"] == "float32"
    assert document["weights"] == "/models/pages/2.f32"
    assert weights == latest.params  # the committed version, byte for byte
    assert document["sha256"] == hashlib.sha256(weights).hexdigest()
    assert document["created_at"] % server.settings.monitor_bucket_s == 0
    spec = ModelSpec.from_dict(document["model"])
    params = params_from_weights(weights, spec)
    signals = predict_signals(5, seed=3)
    scored = predict(document, params, parse_signals(signals), now=0.0)
    assert [p["item"] for p in scored["predictions"]] == [f"e{i}" for i in range(5)]
    assert scored["version"] == 2 and scored["outputs"] == document["outputs"]
    for item, got in zip(signals["predict"], scored["predictions"], strict=True):
        ex = Example(tuple(item["indices"]), tuple(item["values"]))
        assert got["scores"] == predict_proba(spec, params, ex)
        assert sum(got["scores"]) == pytest.approx(1.0)
    # The model was trained: version 2 is not the initial model.
    initial = await server.store.read(lambda s: s.get_model_version("pages", 0))
    assert initial is not None and initial.params != latest.params


async def test_caching_etags_304_and_cors(live: LiveFactory) -> None:
    server = await live()
    await server.coordinator.add_task(small_task())
    base = _http(server)
    async with aiohttp.ClientSession() as http:
        for path, cache, ctype in (
            ("/models/t1", "public, max-age=60", "application/json"),
            ("/models/t1/0.f32", "public, max-age=31536000, immutable", "application/octet-stream"),
        ):
            async with http.get(base + path, headers={"Origin": "https://page.example"}) as resp:
                assert resp.status == 200, path
                assert resp.content_type == ctype
                assert resp.headers["Cache-Control"] == cache
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                etag = resp.headers["ETag"]
                assert etag.startswith('"') and etag.endswith('"')
                body = await resp.read()
            for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
                async with http.get(base + path, headers={"If-None-Match": header}) as resp:
                    assert resp.status == 304, (path, header)
                    assert resp.headers["ETag"] == etag
                    assert resp.headers["Cache-Control"] == cache
                    assert resp.headers["Access-Control-Allow-Origin"] == "*"
                    assert await resp.read() == b""
            async with http.get(base + path, headers={"If-None-Match": '"stale"'}) as resp:
                assert resp.status == 200 and await resp.read() == body
        # The weights' ETag is their SHA-256, which the document names.
        async with http.get(base + "/models/t1") as resp:
            document = await resp.json()
        async with http.get(base + "/models/t1/0.f32") as resp:
            assert resp.headers["ETag"] == f'"{document["sha256"]}"'
            assert len(await resp.read()) == 4 * document["model"]["param_count"]


async def test_no_token_is_needed_and_none_is_looked_at(live: LiveFactory) -> None:
    server = await live()
    await server.coordinator.add_task(small_task())
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer dnd_wrong"}) as http:
        async with http.get(_http(server) + "/models/t1") as resp:
            assert resp.status == 200
        async with http.get(_http(server) + "/api/v1/tasks") as resp:
            assert resp.status == 401  # the admin API still needs one


async def _error(http: aiohttp.ClientSession, url: str, status: int) -> str:
    async with http.get(url) as resp:
        assert resp.status == status, (url, await resp.text())
        assert resp.headers["Access-Control-Allow-Origin"] == "*"  # a page can read why
        error = (await resp.json())["error"]
        assert error["status"] == status
        return str(error["message"])


async def test_public_model_false_unknown_tasks_and_bad_versions(live: LiveFactory) -> None:
    server = await live()
    await server.coordinator.add_task(small_task())
    private = TaskConfig.from_dict({**small_task("private").to_dict(), "public_model": False})
    await server.coordinator.add_task(private)
    base = _http(server)
    async with aiohttp.ClientSession() as http:
        for path in ("/models/private", "/models/private/0.f32"):
            message = await _error(http, base + path, 404)
            assert "does not publish its model" in message
        for path in ("/models/nope", "/models/nope/0.f32"):
            assert "no task named 'nope'" in await _error(http, base + path, 404)
        assert "no published model version 7" in await _error(http, base + "/models/t1/7.f32", 404)
        for raw in ("abc", "-1", "1e3", "9007199254740992", "9" * 5000):
            assert "integer" in await _error(http, f"{base}/models/t1/{raw}.f32", 400)
        await _error(http, base + "/models/t1/0.bin", 404)  # no such route: still JSON


async def test_a_version_made_from_fewer_than_k_reports_is_not_served(live: LiveFactory) -> None:
    server, _, _ = await _small_rounds(live, 10)  # two rounds of two reports, k = 10
    base = _http(server)
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/models/t1") as resp:
            document = await resp.json()
        assert document["version"] == 0 and document["weights"] == "/models/t1/0.f32"
        for version in (1, 2):
            message = await _error(http, f"{base}/models/t1/{version}.f32", 404)
            assert f"no published model version {version}" in message
        async with http.get(base + "/models/t1/0.f32") as resp:
            assert resp.status == 200


async def test_the_same_rounds_are_published_once_k_lets_them_through(live: LiveFactory) -> None:
    server, _, _ = await _small_rounds(live, 2)  # k = 2: the check above can fail
    async with aiohttp.ClientSession() as http:
        async with http.get(_http(server) + "/models/t1") as resp:
            document = await resp.json()
        assert document["version"] == 2
        async with http.get(_http(server) + "/models/t1/1.f32") as resp:
            assert resp.status == 200
            assert np.frombuffer(await resp.read(), "<f4").shape == (11,)


def test_public_model_is_a_task_file_key_true_by_default() -> None:
    config = small_task()
    assert config.public_model is True and config.to_dict()["public_model"] is True
    raw = config.to_dict()
    raw.pop("public_model")  # a task stored before the key existed
    assert TaskConfig.from_dict(raw) == config
    off = TaskConfig.from_dict({**config.to_dict(), "public_model": False})
    assert off.public_model is False and TaskConfig.from_dict(off.to_dict()) == off
    with pytest.raises(TaskConfigError, match="public_model: true or false"):
        TaskConfig.from_dict({**config.to_dict(), "public_model": "no"})
    with pytest.raises(TaskConfigError, match="public_model"):
        TaskConfig.from_dict({**config.to_dict(), "public_models": True})
