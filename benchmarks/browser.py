"""Browser worker benchmark: the bundle, Pyodide's cold and warm start, check-in, training, memory.

Everything runs for real: the bundle built by ``dandelion bundle``, a ``dandelion serve``
process serving it at /worker/, Debian's headless Chromium driven by Playwright. Side by side
in one run:

(a) bundle size: the whole folder, the Pyodide runtime, and our wheel.
(b) warm start, with and without our wheel: a fresh module Web Worker boots Pyodide from the
    bundle; "with" also installs the worker wheel and imports the worker's entry module. One
    browser, its HTTP cache filled by a warm-up of each kind first (a returning visitor's).
    ``--boots`` pairs, the two kinds taking turns going first; per pair the ratio with / bare.
(c) cold start beside the warm one: for each of ``--cold-boots`` pairs, Chromium on a fresh
    persistent-context profile in a new temporary directory (empty HTTP cache, no compiled
    code cached), the page opened, then one boot with the wheel (cold: every byte of the
    bundle comes over the network and every module is compiled) and a second boot in the same
    browser (warm). Per pair the ratio cold / warm; the profile's growth over the cold boot
    shows what it had to fetch and cache.
(d) time to first check-in and to the first accepted update: the page API's ``start()`` to the
    worker's "connected" status (its check-in goes out right after) and to its first ack.
(e) local training for the demo task (logistic regression on one synthetic user's 28-day
    history, the demo's hyper-parameters): ``browser_worker.reference.reference_round`` in
    Pyodide (Chromium, page thread) and in this CPython, the same code on the same data. A
    sample is ``--train-repeats`` trainings of the round (hundreds of milliseconds a side);
    ``--pairs`` pairs of samples interleaved (Pyodide, CPython; then CPython, Pyodide; …) after
    one untimed warm-up sample a side; per pair the ratio Pyodide / CPython.
(f) worker memory: the Chromium renderer's resident memory with the worker trained minus the
    same page before the worker started, and Pyodide's WebAssembly heap.

Every ratio is the median over its pairs with quartiles and extremes (``benchmarks/paired.py``).

    python benchmarks/browser.py --json

With ``--json`` the last line is one JSON object with ``train_pyodide_vs_cpython`` (median of
the per-pair ratios; ``train_pyodide_vs_cpython_spread``), ``cold_vs_warm_boot`` and
``warm_boot_with_wheel_vs_bare`` (the same, with their ``_spread``), among the other figures.
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

from benchmarks.paired import pair_order, paired_ratios  # noqa: E402
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
#: A pause before each timed boot, so the Web Worker the last boot terminated is gone.
_SETTLE_S = 0.5


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


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


async def measure(boots: int, cold_boots: int, pairs: int, train_repeats: int) -> dict[str, Any]:
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
                result = await cold_and_warm(pw, bench, work, cold_boots)
                browser = await pw.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                result |= await _in_browser(browser, bench, pyo, coord, boots)
                result |= await _training(browser, pyo, pairs, train_repeats)
                await browser.close()
        finally:
            await bench.stop()
            await pyo.stop()
            coord.stop()
    return {**sizes, **result}


async def cold_and_warm(pw: Any, bench: PageServer, work: Path, pairs: int) -> dict[str, Any]:
    """(c): per pair a fresh profile, a cold boot with the wheel, then a warm one."""
    cold: list[float] = []
    warm: list[float] = []
    cached: list[float] = []
    for i in range(pairs):
        profile = work / f"profile-{i}"  # new and empty: nothing cached
        context = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(bench.url)
            await _wait_ready(page)
            before = _dir_mb(profile)
            cold.append((await page.evaluate("window.__boot(true)"))["wall_ms"])
            cached.append(_dir_mb(profile) - before)
            await asyncio.sleep(_SETTLE_S)
            warm.append((await page.evaluate("window.__boot(true)"))["wall_ms"])
        finally:
            await context.close()
        print(f"cold {cold[-1]:.0f} ms, warm {warm[-1]:.0f} ms", file=sys.stderr)
    ratio = paired_ratios(cold, warm)
    return {
        "cold_boot_ms": statistics.median(cold),
        "cold_pair_warm_boot_ms": statistics.median(warm),
        "cold_vs_warm_boot": ratio["median"],
        "cold_vs_warm_boot_spread": ratio,
        "cold_profile_growth_mb": statistics.median(cached),
    }


async def _in_browser(
    browser: Any, bench: PageServer, pyo: PageServer, coord: Any, boots: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # (b) warm start, with and without the wheel in turns, after a warm-up of each.
    page = await browser.new_page()
    await page.goto(bench.url)
    await _wait_ready(page)
    await page.evaluate("window.__boot(true)")
    await page.evaluate("window.__boot(false)")
    with_wheel: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for i in range(boots):
        for k in pair_order(i):
            await asyncio.sleep(_SETTLE_S)
            timing = await page.evaluate(f"window.__boot({'true' if k == 0 else 'false'})")
            (with_wheel if k == 0 else bare).append(timing)
    for kind, runs in (("with wheel", with_wheel), ("bare", bare)):
        print(f"warm, {kind}: {[round(t['wall_ms']) for t in runs]} ms", file=sys.stderr)
    ratio = paired_ratios([t["wall_ms"] for t in with_wheel], [t["wall_ms"] for t in bare])
    out["warm_boot_bare_ms"] = statistics.median(t["wall_ms"] for t in bare)
    out["warm_boot_with_wheel_ms"] = statistics.median(t["wall_ms"] for t in with_wheel)
    out["install_and_import_ms"] = statistics.median(t["install_and_import_ms"] for t in with_wheel)
    out["warm_boot_with_wheel_vs_bare"] = ratio["median"]
    out["warm_boot_with_wheel_vs_bare_spread"] = ratio
    # Within each boot: its install and import over its own boot (blind to the boot's drift).
    out["install_share_of_boot"] = statistics.median(
        t["total_ms"] / t["fetch_and_boot_ms"] for t in with_wheel
    )
    out["pyodide_python"] = with_wheel[0]["python"]
    out["wasm_memory_mb"] = (with_wheel[0].get("wasm_memory_bytes") or 0) / 1e6
    await page.close()

    # (d) + (f): a fresh page; renderer memory before the worker starts and after its update.
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
    return out


async def _training(browser: Any, pyo: PageServer, pairs: int, repeats: int) -> dict[str, Any]:
    """(e): interleaved pairs of samples, each ``repeats`` trainings of the same round."""
    request = _demo_request(repeats)
    page = await browser.new_page()
    await page.goto(pyo.url)
    await _wait_ready(page)

    async def pyodide() -> dict[str, Any]:
        return dict(json.loads(await page.evaluate("(r) => window.__reference(r)", request)))

    async def cpython() -> dict[str, Any]:
        return dict(json.loads(reference_round(request)))

    sides = (pyodide, cpython)
    first = [await run() for run in sides]  # untimed warm-up: WebAssembly tiers up
    assert first[0]["frame"] == first[1]["frame"], "the runtimes disagree on the update"
    samples: list[list[float]] = [[], []]
    for i in range(pairs):
        for k in pair_order(i):
            answer = await sides[k]()
            assert answer["frame"] == first[0]["frame"], "a repeat changed the update"
            samples[k].append(sum(answer["train_ms"]))
    await page.close()
    ratio = paired_ratios(samples[0], samples[1])
    print(f"training, ms per sample: Pyodide {samples[0]}, CPython {samples[1]}", file=sys.stderr)
    return {
        "train_examples": first[1]["examples"],
        "train_epochs": DEMO_HYPER["epochs"],
        "train_repeats_per_sample": repeats,
        "train_pairs": pairs,
        "train_pyodide_ms": statistics.median(samples[0]),
        "train_cpython_ms": statistics.median(samples[1]),
        "train_pyodide_vs_cpython": ratio["median"],
        "train_pyodide_vs_cpython_spread": ratio,
        "features_pyodide_ms": first[0]["features_ms"],
        "features_cpython_ms": first[1]["features_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=9, help="warm start pairs [9]")
    parser.add_argument("--cold-boots", type=int, default=7, help="fresh profiles [7]")
    parser.add_argument("--pairs", type=int, default=21, help="training pairs [21]")
    parser.add_argument(
        "--train-repeats", type=int, default=32, help="trainings of the round per sample [32]"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if min(args.boots, args.cold_boots, args.pairs) < 2:
        parser.error("every kind of pair needs at least 2 repeats for a spread")
    result = asyncio.run(measure(args.boots, args.cold_boots, args.pairs, args.train_repeats))
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(rounded) if args.json else json.dumps(rounded, indent=2))


if __name__ == "__main__":
    main()
