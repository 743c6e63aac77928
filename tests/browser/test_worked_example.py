"""The worked example of docs/tasks.md end to end, as a stranger would run it: the package
`examples/engagement` bundled with `--with`, a coordinator serving that bundle, a Pyodide worker
in a page and CPython workers training the task's own model together for rounds, `predict()`
answering in the page with the released model, and the ONNX export giving the same scores."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_worker.host.cpython import CPythonHost
from browser_worker.predict import predict as predict_here
from browser_worker.worker import Worker, WorkerConfig
from dandelion.plugins import use_plugins
from dandelion.taskspec import ModelSpec, parse_signals, registry

from ..conftest import scaled
from .harness import CoordinatorProcess, PageServer, RequestLog, poll

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "engagement"
PACKAGE = EXAMPLE / "engagement"
ROUNDS = 2


def dandelion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dandelion", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def example_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example") / "worker-bundle"
    built = dandelion("bundle", "--with", str(PACKAGE), "--out", str(out), "--json")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["plugins"] == ["engagement"]
    return out


def user_signals(seed: int) -> dict[str, Any]:
    """One synthetic user of the example's own generator, in the JSON a page hands over."""
    use_plugins([str(PACKAGE)])
    days = 3.0
    signals = registry.objective("long_read").synthetic(
        seed, {}, days, time.time() - days * 86400, {}
    )
    return {
        "pageTimes": [
            {"url": p.url, "start": p.start * 1000, "ms": p.seconds * 1000}
            for p in signals.page_times
        ],
        "tzOffsetMin": 0,
    }


def example_task(tmp: Path, *, evaluation: bool = False) -> str:
    """The example's task file, for rounds of 3 reports; with ``evaluation``, an evaluation
    round on the last model once the ROUNDS training rounds are done."""
    text = (EXAMPLE / "task.toml").read_text()
    text = text.replace("goal = 20", "goal = 3").replace("min_reports = 10", "min_reports = 3")
    text += f"over_selection = 1.0\nmax_rounds = {ROUNDS}\n"
    if evaluation:
        text += f"\n[evaluation]\nevery = {ROUNDS}\nholdout = 0.3\ngoal = 3\nmin_reports = 3\n"
    return text


async def cpython_worker(ws: str, seed: int) -> Worker:
    signals = parse_signals(user_signals(seed))

    def data(objective: str, features: dict[str, Any], now: float) -> list[Any]:
        return registry.examples_for(signals, objective, features, now)

    return Worker(
        CPythonHost(), WorkerConfig(ws, worker_id=f"cpython-{seed}"), data, rng=random.Random(seed)
    )


async def test_worked_example_trains_in_pyodide_and_cpython_predicts_and_exports(
    tmp_path: Path, example_bundle: Path, browser: Any, requests: RequestLog
) -> None:
    workdir = tmp_path / "coordinator"
    workdir.mkdir()
    # Rounds of 3 reports: the k threshold of the public model endpoint is set to 3.
    coord = CoordinatorProcess(
        workdir,
        example_bundle,
        example_task(tmp_path, evaluation=True),
        extra_args=("--monitor-k", "3"),
    )
    await coord.start()
    page_signals = user_signals(seed=1)
    html = (Path(__file__).parent / "pages" / "predict.html").read_text()
    html = html.replace("{bundle}", coord.http + "/worker/").replace("{ws}", coord.ws)
    site = PageServer(html, page_signals)
    await site.start()
    workers = [await cpython_worker(coord.ws, seed) for seed in (2, 3)]
    runs = [asyncio.ensure_future(w.run()) for w in workers]
    try:
        context = await browser.new_context()
        context.on("request", requests.record)
        page = await context.new_page()
        await page.goto(site.url)
        status = await poll(
            page,
            "window.__status",
            lambda s: bool(s) and s.get("updates_accepted", 0) >= ROUNDS,
            timeout=scaled(180),
            what=f"the page's Pyodide worker to have {ROUNDS} updates accepted",
        )
        assert status["rounds_joined"] >= ROUNDS
        # Then an evaluation round on the last model: Pyodide and CPython score their held-out
        # examples and send only the three sums.
        status = await poll(
            page,
            "window.__status",
            lambda s: s.get("extra", {}).get("evaluations_accepted", 0) >= 1,
            timeout=scaled(120),
            what="the page's Pyodide worker to have an evaluation report accepted",
        )
        deadline = time.monotonic() + scaled(60)
        while time.monotonic() < deadline and not all(
            w.status.extra.get("evaluations_accepted", 0) >= 1 for w in workers
        ):
            await asyncio.sleep(0.2)
        assert all(w.status.updates_accepted == ROUNDS for w in workers)
        assert all(w.status.extra.get("evaluations_accepted") == 1 for w in workers)
        rounds = coord.sql(
            "select round, kind, reported from rounds where task = 'long-read'"
            " and status = 'completed' order by round"
        )
        assert rounds == [(1, "train", 3), (2, "train", 3), (3, "evaluate", 3)], rounds
        ((version, reports, withheld, count, loss, accuracy),) = coord.sql(
            "select model_version, reports, withheld, count, loss, accuracy from evaluations"
            " where task = 'long-read'"
        )
        assert (version, reports, withheld) == (ROUNDS, 3, 0) and count > 0
        assert 0.0 <= accuracy <= 1.0 and 0.0 < loss < 10.0

        # predict() in the page: the released model (version ROUNDS) on the page's signals.
        answer = await page.evaluate("window.__predict('long-read')")
        assert answer["task"] == "long-read" and answer["version"] == ROUNDS
        assert answer["objective"] == "long_read" and answer["outputs"] == ["short", "long"]
        assert len(answer["predictions"]) == 20
        now = answer["now"]  # the moment the page's features describe
        assert abs(now - time.time()) < 60
        # Errors in words: the coordinator's reason for an unknown task, the nearest name for
        # a misspelt option (start() and predict() refuse options they do not take).
        failed = "(p) => p.then(() => null, (e) => e.message)"
        unknown = await page.evaluate(f"({failed})(window.__predict('nope'))")
        assert unknown == "model of nope: no task named 'nope' (HTTP 404)", unknown
        misspelt = await page.evaluate(f"({failed})(window.__api.predict({{tsk: 'long-read'}}))")
        assert misspelt.startswith('predict(): unknown option "tsk"; did you mean "task"?')
        misspelt = await page.evaluate(
            f"({failed})(window.__api.start({{consent: 'opted_in', signls: {{}}}}))"
        )
        assert misspelt.startswith('start(): unknown option "signls"; did you mean "signals"?')

        # The same scores from the same document and weights in CPython ...
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(coord.http + "/models/long-read") as resp:
                document = await resp.json()
            async with http.get(coord.http + document["weights"]) as resp:
                weights = await resp.read()
        spec = ModelSpec.from_dict(document["model"])
        params = np.frombuffer(weights, dtype="<f4").astype(np.float64).tolist()
        assert len(params) == spec.param_count
        signals = parse_signals(page_signals)
        here = predict_here(document, params, signals, now)
        assert [p["item"] for p in here["predictions"]] == [
            p["item"] for p in answer["predictions"]
        ]

        # ... and from the ONNX export, run by onnxruntime, within 1e-5.
        onnx_file = tmp_path / "long-read.onnx"
        exported = dandelion(
            "model", "export", "long-read", "--format", "onnx", "--out", str(onnx_file),
            "--db", str(coord.db), "--with", str(PACKAGE),
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        import onnxruntime

        objective = registry.objective("long_read")
        features = objective.configure(document["features"])
        inputs = objective.predict_inputs(signals, features, now)
        dense = np.zeros((len(inputs), spec.num_features), dtype=np.float32)
        for r, (_, ex) in enumerate(inputs):
            dense[r, list(ex.indices)] = ex.values
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        (onnx_scores,) = session.run(["scores"], {"x": dense})
        page_scores = np.array([p["scores"] for p in answer["predictions"]])
        assert np.abs(onnx_scores - page_scores).max() < 1e-5
        assert (
            np.abs(page_scores - np.array([p["scores"] for p in here["predictions"]])).max() < 1e-6
        )
        await context.close()
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*runs, return_exceptions=True)
        await site.stop()
        coord.stop()
    assert requests.outside_loopback() == []
