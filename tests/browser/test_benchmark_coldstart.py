"""The browser benchmark's cold start (benchmarks/browser.py) is cold: each pair boots on a
fresh Chromium profile whose HTTP cache starts empty, so the cold boot fetches the whole bundle
and the profile grows by it, while the warm boot in the same browser finds it cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from benchmarks.browser import cold_and_warm

from .harness import PageServer, task_toml

ROOT = Path(__file__).resolve().parents[2]


async def test_each_cold_boot_fetches_the_whole_bundle_into_a_fresh_profile(
    coordinator: Any, bundle_dir: Path, tmp_path: Path
) -> None:
    coord = await coordinator(task_toml())
    html = (ROOT / "benchmarks" / "browser_page.html").read_text()
    page = PageServer(html.replace("{bundle}", coord.http + "/worker/"), {})
    await page.start()
    try:
        async with async_playwright() as pw:
            figures = await cold_and_warm(pw, page, tmp_path, pairs=2)
    finally:
        await page.stop()
    bundle_mb = sum(f.stat().st_size for f in bundle_dir.rglob("*") if f.is_file()) / 1e6
    # Pyodide's runtime is most of the bundle; an already-filled cache would not grow by it.
    assert figures["cold_profile_growth_mb"] > 0.8 * bundle_mb
    assert figures["cold_vs_warm_boot_spread"]["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("profile-")) == [
        "profile-0",
        "profile-1",
    ]
