"""A task in the state file that this coordinator cannot run — created with ``task create
--with`` a package the served bundle lacks — is left out with one warning: ticks go on, the
other tasks run, its public model answers 503 in words, and it runs once its code is here."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from dandelion.coordinator import TaskConfig
from dandelion.coordinator.registry import create_task
from dandelion.storage import SQLiteStore
from dandelion.taskspec import registry
from dandelion.taskspec.objectives.page_examples import PageExamples

from .conftest import LiveFactory, small_task
from .test_admin_api import _http
from .test_public_model import _error


class Gone(PageExamples):
    """An objective of a package that this coordinator does not have."""


async def test_a_task_whose_objective_is_not_here_is_left_out_with_one_warning(
    live: LiveFactory, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path) + "/state.db"
    registry.OBJECTIVES["gone_obj"] = Gone()
    try:
        raw = {**small_task("gone").to_dict(), "objective": "gone_obj"}
        store = SQLiteStore(db)
        create_task(store, TaskConfig.from_dict(raw), time.time())  # as `task create --with`
        store.close()
    finally:
        del registry.OBJECTIVES["gone_obj"]  # the package is not in this process
    caplog.set_level(logging.WARNING, logger="dandelion.coordinator")
    server = await live(db=db)  # starts: the task does not stop it
    await server.coordinator.add_task(small_task("here"))
    await asyncio.sleep(0.3)  # about 15 ticks at tick_s 0.02
    assert set(server.coordinator.tasks) == {"here"}
    warnings = [r.getMessage() for r in caplog.records if "not run here" in r.getMessage()]
    assert len(warnings) == 1  # once, not at every tick
    assert warnings[0].startswith(
        "task gone is not run here: objective: objective 'gone_obj' is not known here (known: "
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with aiohttp.ClientSession() as http:
        message = await _error(http, _http(server) + "/models/gone", 503)
        assert message == (
            "task 'gone' is not run by this coordinator: its model is not in the served bundle"
        )
    # once the code is here (a restart with a rebuilt bundle, or an edit), it runs
    registry.OBJECTIVES["gone_obj"] = Gone()
    try:
        again = await live(db=db)
        assert set(again.coordinator.tasks) == {"gone", "here"}
    finally:
        del registry.OBJECTIVES["gone_obj"]
