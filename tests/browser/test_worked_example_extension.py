"""The worked example of docs/tasks.md in the extension: the package `examples/engagement`
built into the extension, the extension recording how long pages stay in front as the user
switches tabs, its Pyodide worker training the task's `long_read` objective on those page
times together with two CPython workers, and `predict()` answering a page of the extension
with the released model — the same scores CPython and the ONNX export give from the public
model document, the weights and the page times the extension stored."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from playwright.async_api import async_playwright

from browser_worker.predict import predict as predict_here
from dandelion.bundle import assemble_extension
from dandelion.plugins import use_plugins
from dandelion.taskspec import ModelSpec, parse_signals, registry

from ..conftest import scaled
from .harness import (
    CHROMIUM_ARGS,
    CoordinatorProcess,
    PageServer,
    RequestLog,
    extension_chromium,
    poll,
)
from .test_worked_example import PACKAGE, ROUNDS, cpython_worker, dandelion, example_task
from .traffic import TargetRecorder

TASK = "long-read"
# Page times here last about a second: a long read is one of at least THRESHOLD_S, so that
# the short and the long ones below are both labels the model sees.
THRESHOLD_S = 1.5
# (tab, seconds in front): three tabs on two hosts, switched as a person would.
BROWSING = [(0, 0.4), (1, 2.0), (2, 0.4), (0, 1.8), (1, 0.4), (2, 1.8), (0, 0.4)]
HOME = "<!doctype html><title>home</title>"
# Two hosts of this machine (the objective's items are hosts): 127.0.0.1 and 127.0.0.2, which
# Chromium's resolver rules let through, too.
HOSTS = ("127.0.0.1", "127.0.0.2")
ARGS = [
    f"{a}, EXCLUDE {HOSTS[1]}" if a.startswith("--host-resolver-rules=") else a
    for a in CHROMIUM_ARGS
]


def _task(tmp: Path) -> str:
    text = example_task(tmp)
    assert "threshold_s = 30.0" in text
    return text.replace("threshold_s = 30.0", f"threshold_s = {THRESHOLD_S}")


async def _stored(page: Any, *keys: str) -> dict[str, Any]:
    return dict(await page.evaluate(f"chrome.storage.local.get({json.dumps(list(keys))})"))


async def test_worked_example_trains_and_predicts_in_the_extension(
    tmp_path: Path, requests: RequestLog, artifacts: Path
) -> None:
    started = time.monotonic()
    workdir = tmp_path / "coordinator"
    workdir.mkdir()
    extension = tmp_path / "extension"
    # The extension's own bundle (its worker/ folder, with the package in the wheel) is what
    # the coordinator serves too: one wheel, built once. The port is chosen before either.
    coord = CoordinatorProcess(
        workdir, extension / "worker", _task(tmp_path), extra_args=("--monitor-k", "3")
    )
    assemble_extension(extension, coord.ws, plugins=use_plugins([str(PACKAGE)]))
    manifest = json.loads((extension / "manifest.json").read_text())
    policy = manifest["content_security_policy"]["extension_pages"]
    assert f"connect-src 'self' ws: wss: https: {coord.http}" in policy  # a development build

    # The task waits, paused, until the extension has page times of its own: a worker with no
    # local data lets its first assignment lapse and comes back only minutes later.
    (workdir / "task.toml").write_text(_task(tmp_path))
    db = ("--db", str(coord.db))
    made = dandelion("task", "create", str(workdir / "task.toml"), *db, "--with", str(PACKAGE))
    assert made.returncode == 0, made.stderr
    paused = dandelion("task", "pause", TASK, *db, "--reason", "until the browser has data")
    assert paused.returncode == 0, paused.stderr
    await coord.start()

    sites = [PageServer(HOME, {}, host) for host in HOSTS]
    for site in sites:
        await site.start()
    workers = []
    runs: list[asyncio.Future[Any]] = []
    profile = tmp_path / "profile"
    try:
        async with async_playwright() as pw:
            context = await extension_chromium(
                pw,
                profile,
                [*ARGS, "--remote-debugging-port=0"],  # for the recorder, beside Playwright's pipe
                extension,
            )
            try:
                context.on("request", requests.record)
                recorder = await TargetRecorder.connect(profile)
                worker = context.service_workers or [await context.wait_for_event("serviceworker")]
                origin = f"chrome-extension://{worker[0].url.split('/')[2]}/"
                options = await context.new_page()
                await options.goto(f"{origin}options.html")
                ask = f"chrome.runtime.sendMessage({{type: 'dandelion.predict', task: '{TASK}'}})"
                refused = await options.evaluate(ask)
                assert refused["ok"] is False and "not opted in" in refused["error"], refused

                await options.click("#opt-in")
                tabs = []
                for n, site in zip(range(3), [sites[0], sites[1], sites[0]], strict=True):
                    tab = await context.new_page()
                    await tab.goto(f"{site.url}visit/page{n}")
                    tabs.append(tab)
                for n, seconds in BROWSING:
                    await tabs[n].bring_to_front()
                    await asyncio.sleep(seconds)
                await options.bring_to_front()  # the last page's time ends here
                # In front now: the options page, whose address is not a web page's.
                stored = await poll(
                    options,
                    "Promise.all([chrome.storage.local.get(['pageTimes', 'tabEvents']),"
                    " chrome.storage.session.get('frontPage')]).then(([a, b]) => ({...a, ...b}))",
                    lambda s: (
                        (s.get("frontPage") or {"url": ""})["url"] is None
                        and len(s.get("pageTimes", [])) >= len(BROWSING)
                    ),
                    timeout=10,
                    what="the extension to store a page time for every switch",
                )
                page_times = stored["pageTimes"]
                assert {p["url"].split("/visit/")[0] + "/" for p in page_times} == {
                    site.url for site in sites
                }
                seconds = sorted(p["ms"] / 1000 for p in page_times)
                assert seconds[0] < THRESHOLD_S < seconds[-1], seconds  # both labels
                kinds = {e["kind"] for e in stored["tabEvents"]}
                assert {"created", "activated", "updated"} <= kinds, kinds
                await asyncio.sleep(2.5)  # the worker has them once the debounced push went

                resumed = dandelion("task", "resume", TASK, *db)
                assert resumed.returncode == 0, resumed.stderr
                workers = [await cpython_worker(coord.ws, seed) for seed in (2, 3)]
                runs = [asyncio.ensure_future(w.run(max_updates=ROUNDS)) for w in workers]
                await poll(
                    options,
                    "document.querySelector('#updates').textContent",
                    lambda updates: updates not in ("", "0") and int(updates) >= ROUNDS,
                    timeout=120,
                    what=f"the extension's worker to have {ROUNDS} updates accepted",
                )
                await asyncio.wait_for(asyncio.gather(*runs), scaled(60))
                rounds = coord.sql(
                    "select round, reported from rounds where task = ? and status = 'completed'",
                    TASK,
                )
                assert len(rounds) == ROUNDS and all(n == 3 for _, n in rounds), rounds
                await options.screenshot(path=str(artifacts / "extension-worked-example.png"))

                # predict() from a page of the extension: the released model on its signals.
                answer = await options.evaluate(ask)
                assert answer["ok"] is True, answer
                assert answer["task"] == TASK and answer["version"] == ROUNDS, answer
                assert answer["objective"] == "long_read" and answer["outputs"] == ["short", "long"]
                items = [p["item"] for p in answer["predictions"]]
                assert sorted(items) == list(HOSTS), items
                assert abs(answer["now"] - time.time()) < 60
                signals = {
                    "pageTimes": (await _stored(options, "pageTimes"))["pageTimes"],
                    "tzOffsetMin": await options.evaluate("-new Date().getTimezoneOffset()"),
                }
                assert signals["pageTimes"] == page_times  # nothing was recorded since
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{coord.http}/models/{TASK}") as resp:
                        document = await resp.json()
                    async with http.get(coord.http + document["weights"]) as resp:
                        weights = await resp.read()
                await recorder.close()
            finally:
                await context.close()
    finally:
        for w in workers:
            w.stop()
        for site in sites:
            await site.stop()
        coord.stop()

    # The same scores in CPython, from the public model document and weights, the page times
    # the extension stored and the moment the extension's answer names ...
    assert document["version"] == ROUNDS
    spec = ModelSpec.from_dict(document["model"])
    params = np.frombuffer(weights, dtype="<f4").astype(np.float64).tolist()
    use_plugins([str(PACKAGE)])
    parsed = parse_signals(signals)
    here = predict_here(document, params, parsed, answer["now"])
    assert [p["item"] for p in here["predictions"]] == items
    scores = np.array([p["scores"] for p in answer["predictions"]])
    assert np.abs(scores - np.array([p["scores"] for p in here["predictions"]])).max() < 1e-6

    # ... and from the ONNX export, run by onnxruntime, within 1e-5.
    onnx_file = tmp_path / "long-read.onnx"
    exported = dandelion(
        "model", "export", TASK, "--format", "onnx", "--out", str(onnx_file),
        "--db", str(coord.db), "--with", str(PACKAGE),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    import onnxruntime

    objective = registry.objective("long_read")
    inputs = objective.predict_inputs(
        parsed, objective.configure(document["features"]), answer["now"]
    )
    dense = np.zeros((len(inputs), spec.num_features), dtype=np.float32)
    for r, (_, ex) in enumerate(inputs):
        dense[r, list(ex.indices)] = ex.values
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (onnx_scores,) = session.run(["scores"], {"x": dense})
    assert np.abs(onnx_scores - scores).max() < 1e-5

    # Every request left for this machine only; the extension's own (its offscreen document
    # and the Web Worker inside it, watched by the recorder) went to the coordinator alone:
    # the WebSocket, the model document and its weights.
    assert requests.outside_loopback() == []
    made_here = recorder.requests_of(recorder.family(origin))
    outside = {(r.kind, r.url) for r in made_here if not r.url.startswith(origin)}
    assert ("WebSocket", coord.ws) in outside, outside
    fetched = {url for kind, url in outside if kind != "WebSocket"}
    assert fetched == {f"{coord.http}/models/{TASK}", coord.http + document["weights"]}, outside
    print(f"worked example in the extension: {time.monotonic() - started:.1f} s")
