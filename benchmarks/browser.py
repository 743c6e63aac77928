"""Browser worker benchmark: the bundle, Pyodide's cold start, check-in, training, memory.

Everything runs for real: the bundle built by ``dandelion bundle``, a ``dandelion serve``
process serving it at /worker/, Debian's headless Chromium driven by Playwright. Side by side
in one run:

(a) bundle size: the whole folder, the Pyodide runtime, and our wheel.
(b) cold start, with and without our wheel: a fresh module Web Worker boots Pyodide from the
    bundle; "with" also installs the worker wheel through the lock file and imports the
    worker's entry module. Interleaved, median of ``--boots`` each (after one warm-up that fills
    the HTTP cache: the figures are a returning visitor's, whose browser has the bundle cached).
(c) time to first check-in and to the first accepted update: the page API's ``start()`` to the
    worker's "connected" status (its check-in goes out right after) and to its first ack.
(d) local training per round for the demo task (logistic regression on one synthetic user's
    28-day history, the demo's hyper-parameters): ``browser_worker.reference.reference_round``
    in Pyodide (Chromium, page thread) and in this CPython, the same code on the same data;
    median of the warm repeats.
(e) worker memory: the Chromium renderer's resident memory with the worker trained minus the
    same page before the worker started, and Pyodide's WebAssembly heap.

    python benchmarks/browser.py --json

With ``--json`` the last line is one JSON object with ``train_pyodide_vs_cpython`` (Pyodide
time / CPython time) and ``coldstart_with_wheel_vs_bare`` (median cold start with the wheel /
without), among the other figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from browser_worker.reference import reference_round  # noqa: E402
from dandelion.bundle import assemble_bundle  # noqa: E402
from dandelion.emulation.demo import DEMO_HYPER  # noqa: E402
from tests.browser.harness import (  # noqa: E402
    CHROMIUM_ARGS,
    CoordinatorProcess,
    PageServer,
    chromium_path,
    pyodide_page,
    synthetic_signals,
    task_toml,
)

NOW = 1_795_000_000.0


def _demo_request(repeats: int) -> str:
    return json.dumps(
        {
            "signals": synthetic_signals(1, days=28, end=NOW),
            "now": NOW,
            "objective": "revisit_7d",
            "features": {"num_buckets": 64, "horizon_days": 7.0},
            "model": {"kind": "logreg"},
            "hyper": DEMO_HYPER,
            "seed": 1,
            "repeats": repeats,
        }
    )


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _renderer_rss_mb(browser: Any) -> float:
    """Resident memory of Chromium's renderer processes (the page and its Web Workers)."""
    cdp = await browser.new_browser_cdp_session()
    info = await cdp.send("SystemInfo.getProcessInfo")
    await cdp.detach()
    pids = [p["id"] for p in info["processInfo"] if p["type"] == "renderer"]
    return sum(_rss_kb(pid) for pid in pids) / 1024


async def _wait_ready(page: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await page.evaluate("document.getElementById('state').textContent")
        if state == "ready":
            return
        if state.startswith("failed"):
            raise RuntimeError(state)
        await asyncio.sleep(0.1)
    raise RuntimeError("page did not get ready")


async def measure(boots: int, repeats: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="dandelion-browser-bench-") as tmp:
        work = Path(tmp)
        bundle = assemble_bundle(work / "worker-bundle")
        runtime = sum(v["bytes"] for k, v in bundle.files.items() if k.startswith("pyodide-"))
        wheel = next(v["bytes"] for k, v in bundle.files.items() if k.endswith(".whl"))
        sizes = {
            "bundle_mb": bundle.total_bytes / 1e6,
            "pyodide_runtime_mb": (runtime - wheel) / 1e6,
            "wheel_kb": wheel / 1e3,
            "bundle_files": len(bundle.files),
        }
        print(f"bundle: {sizes}", file=sys.stderr)
        (work / "coord").mkdir()
        coord = CoordinatorProcess(work / "coord", bundle.path, task_toml(goal=1, min_reports=1))
        await coord.start()
        page_html = (ROOT / "benchmarks" / "browser_page.html").read_text()
        bench = PageServer(page_html.replace("{bundle}", coord.http + "/worker/"), {})
        pyo = PageServer(pyodide_page(coord.http + "/worker/"), {})
        await bench.start()
        await pyo.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                result = await _in_browser(browser, bench, pyo, coord, boots, repeats)
                await browser.close()
        finally:
            await bench.stop()
            await pyo.stop()
            coord.stop()
    return {**sizes, **result}


async def _in_browser(
    browser: Any, bench: PageServer, pyo: PageServer, coord: Any, boots: int, repeats: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # (b) cold start, interleaved with/without, after a warm-up of each.
    page = await browser.new_page()
    await page.goto(bench.url)
    await _wait_ready(page)
    await page.evaluate("window.__boot(true)")
    await page.evaluate("window.__boot(false)")
    with_wheel: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for i in range(boots):
        for install in (True, False) if i % 2 == 0 else (False, True):
            timing = await page.evaluate(f"window.__boot({str(install).lower()})")
            (with_wheel if install else bare).append(timing)
    for kind, runs in (("with wheel", with_wheel), ("bare", bare)):
        print(f"{kind}: {[round(t['wall_ms']) for t in runs]} ms", file=sys.stderr)
    med_with = statistics.median(t["wall_ms"] for t in with_wheel)
    med_bare = statistics.median(t["wall_ms"] for t in bare)
    out["coldstart_bare_ms"] = med_bare
    out["coldstart_with_wheel_ms"] = med_with
    out["install_and_import_ms"] = statistics.median(t["install_and_import_ms"] for t in with_wheel)
    out["coldstart_with_wheel_vs_bare"] = med_with / med_bare
    # The same figure within each run (its install and import over its own boot): immune to
    # the drift of a shared machine between runs, blind to any slowdown of the boot itself.
    out["coldstart_paired_ratio"] = statistics.median(
        t["total_ms"] / t["fetch_and_boot_ms"] for t in with_wheel
    )
    out["pyodide_python"] = with_wheel[0]["python"]
    out["wasm_memory_mb"] = (with_wheel[0].get("wasm_memory_bytes") or 0) / 1e6
    print(f"cold start: bare {med_bare:.0f} ms, with wheel {med_with:.0f} ms", file=sys.stderr)
    await page.close()

    # (c) + (e): a fresh page; renderer memory before the worker starts and after its update.
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(bench.url)
    await _wait_ready(page)
    await asyncio.sleep(0.5)
    before = await _renderer_rss_mb(browser)
    signals = synthetic_signals(2, days=28)
    marks = await page.evaluate(
        "([url, signals]) => window.__firstCheckin(url, signals)", [coord.ws, signals]
    )
    after = await _renderer_rss_mb(browser)
    out["first_checkin_ms"] = marks["checkin_ms"]
    out["first_update_ms"] = marks["first_update_ms"]
    out["worker_rss_mb"] = after - before
    print(
        f"first check-in {marks['checkin_ms']:.0f} ms; worker +{after - before:.0f} MB",
        file=sys.stderr,
    )
    await context.close()

    # (d) training per round, Pyodide vs CPython, the same request.
    request = _demo_request(repeats)
    page = await browser.new_page()
    await page.goto(pyo.url)
    await _wait_ready(page)
    in_browser = json.loads(await page.evaluate("(r) => window.__reference(r)", request))
    in_cpython = json.loads(reference_round(request))
    assert in_browser["frame"] == in_cpython["frame"], "the runtimes disagree on the update"
    warm_b = statistics.median(in_browser["train_ms"][1:] or in_browser["train_ms"])
    warm_c = statistics.median(in_cpython["train_ms"][1:] or in_cpython["train_ms"])
    out["train_examples"] = in_cpython["examples"]
    out["train_pyodide_ms"] = warm_b
    out["train_cpython_ms"] = warm_c
    out["train_pyodide_vs_cpython"] = warm_b / warm_c
    out["features_pyodide_ms"] = in_browser["features_ms"]
    out["features_cpython_ms"] = in_cpython["features_ms"]
    print(f"training: Pyodide {warm_b:.1f} ms, CPython {warm_c:.1f} ms", file=sys.stderr)
    await page.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=9, help="cold starts of each kind [9]")
    parser.add_argument("--repeats", type=int, default=6, help="training repeats [6]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.boots, args.repeats))
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(rounded) if args.json else json.dumps(rounded, indent=2))


if __name__ == "__main__":
    main()
