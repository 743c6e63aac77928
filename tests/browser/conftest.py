"""Fixtures for the tests in real headless Chromium: one worker bundle per session, a
coordinator process per test, and a browser that can only reach 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from dandelion.bundle import assemble_bundle

from .harness import CHROMIUM_ARGS, CoordinatorProcess, RequestLog, chromium_path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker bundle, built once from this checkout (Pyodide from node_modules)."""
    out = tmp_path_factory.mktemp("bundle") / "worker-bundle"
    assemble_bundle(out)
    return out


@pytest.fixture
def coordinator(tmp_path: Path, bundle_dir: Path) -> Iterator[Callable[..., Any]]:
    """``await coordinator(task_toml, *serve_flags)`` starts ``dandelion serve``; stopped after
    the test."""
    made: list[CoordinatorProcess] = []

    async def start(task: str, *extra_args: str) -> CoordinatorProcess:
        workdir = tmp_path / f"coordinator{len(made)}"
        workdir.mkdir()
        proc = CoordinatorProcess(workdir, bundle_dir, task, extra_args=extra_args)
        made.append(proc)
        await proc.start()
        return proc

    yield start
    for proc in made:
        proc.stop()


@pytest.fixture
def requests() -> RequestLog:
    return RequestLog()


@pytest.fixture
async def browser(requests: RequestLog) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
