"""The entry points the Web Worker glue (``js/dandelion-worker.mjs``) calls inside Pyodide.

``start(config_json, signals_json, bridge)`` begins taking part and returns at once; the worker
runs on the browser's event loop and reports through ``bridge.status(json)``. ``stop()`` ends
it, ``opt_out()`` (awaitable from JS) tells the coordinator, stops and deletes local state, and
``set_signals(json)`` replaces the local history the next round trains on.

Only importable in Pyodide (it pulls in ``browser_worker.host.pyodide``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from typing import Any

from dandelion.protocol import TensorFrame
from dandelion.taskspec.models import Example, ModelSpec
from dandelion.taskspec.registry import UnknownPlugin, load_plugins, objective
from dandelion.taskspec.signals import Signals, parse_signals, unknown_signal_keys

from .host.pyodide import PyodideHost
from .predict import params_from_weights
from .predict import predict as predict_scores
from .training import Hyper, LocalResult
from .worker import Trainer, Worker, WorkerConfig, WorkerStatus, train_pure

__all__ = ["opt_out", "predict", "set_signals", "start", "stop"]

_state: dict[str, Any] = {"worker": None, "task": None, "signals": Signals(), "bridge": None}


def _examples(name: str, features: dict[str, Any], now: float) -> list[Example]:
    signals: Signals = _state["signals"]
    try:
        task_objective = objective(name)
    except UnknownPlugin:
        return []  # not in this bundle: the assignment lapses (the coordinator checks first)
    return task_objective.examples(signals, task_objective.configure(features), now)


def set_signals(signals_json: str) -> int:
    """Replace the local signals; returns the number of usable items. A key nothing reads is
    ignored, with a warning through the bridge's log (the page's ``log`` event)."""
    load_plugins()
    raw = json.loads(signals_json)  # parsed once, for the signals and for the warning
    _state["signals"] = parse_signals(raw)
    bridge = _state["bridge"]
    if bridge is not None:
        for line in unknown_signal_keys(raw):
            bridge.log("warning", line)
    return len(_state["signals"])


def predict(model_json: str, weights: Any, signals_json: str | None = None) -> str:
    """Score the local signals (or ``signals_json``) with a released model: ``model_json`` is
    the public model document, ``weights`` its float32 bytes. Returns the scores as JSON, with
    ``now``: the time (seconds since the epoch) the features were computed for."""
    load_plugins()
    model = json.loads(model_json)
    signals = parse_signals(signals_json) if signals_json else _state["signals"]
    raw = weights.to_py() if hasattr(weights, "to_py") else weights
    try:
        params = params_from_weights(bytes(raw), ModelSpec.from_dict(model["model"]))
        return json.dumps(predict_scores(model, params, signals, time.time()))
    except UnknownPlugin as exc:
        raise ValueError(
            f"{exc}: this bundle does not hold the task's code "
            "(rebuild it: dandelion bundle --with PACKAGE)"
        ) from None


def _worker(config: dict[str, Any], bridge: Any) -> Worker:
    url = config.get("coordinatorUrl")
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise ValueError("coordinatorUrl must be a ws:// or wss:// URL")
    tasks = config.get("tasks")
    hooks = config.get("testHooks") or {}
    return Worker(
        PyodideHost(bridge),
        WorkerConfig(
            coordinator_url=url,
            worker_id=config.get("workerId") or None,
            tasks=tuple(tasks) if tasks else None,
            eligibility=config.get("eligibility") or None,
            secagg_leave_at=hooks.get("secaggLeaveAt") or None,
        ),
        _examples,
        on_status=lambda status: bridge.status(_status_json(status)),
        trainer=_logging_trainer(bridge) if hooks.get("logUpdates") else train_pure,
    )


def _logging_trainer(bridge: Any) -> Trainer:
    """``testHooks.logUpdates``: the default trainer, and each clipped update to the page's own
    ``log`` event (for tests that check a secure round's sum; it never leaves the page)."""

    async def trainer(
        spec: ModelSpec, frame: TensorFrame, examples: Any, hyper: Hyper, rng: Any
    ) -> LocalResult:
        result = await train_pure(spec, frame, examples, hyper, rng)
        line = {"round": frame.header.round, "task": frame.header.task}
        bridge.log("info", "update " + json.dumps({**line, "values": result.clipped_delta}))
        return result

    return trainer


def start(config_json: str, signals_json: str, bridge: Any) -> int:
    """Start the worker. ``config``: ``coordinatorUrl`` (required), ``tasks``, ``eligibility``,
    ``workerId``. Returns the number of usable signal items."""
    config = json.loads(config_json)
    if _state["worker"] is not None:
        raise RuntimeError("the worker is already running; stop() it first")
    worker = _worker(config, bridge)
    _state["bridge"] = bridge
    count = set_signals(signals_json)
    _state["worker"] = worker
    task = asyncio.ensure_future(worker.run())
    task.add_done_callback(lambda t: _finished(t, bridge))
    _state["task"] = task
    return count


def _status_json(status: WorkerStatus) -> str:
    return json.dumps(asdict(status))


def _finished(task: asyncio.Future[WorkerStatus], bridge: Any) -> None:
    _state["worker"] = None
    _state["task"] = None
    if not task.cancelled() and task.exception() is not None:
        bridge.log("error", f"worker failed: {task.exception()!r}")


def stop() -> None:
    worker: Worker | None = _state["worker"]
    if worker is not None:
        worker.stop()


async def opt_out(config_json: str | None = None, bridge: Any = None) -> bool:
    """Withdraw: the coordinator is told, training stops, local state goes. With no worker
    running, ``config_json`` (and the JS ``bridge``) name the coordinator to tell. Returns
    whether the coordinator was told."""
    worker: Worker | None = _state["worker"]
    task: asyncio.Future[WorkerStatus] | None = _state["task"]
    _state["signals"] = Signals()
    if worker is None and config_json and bridge is not None:
        worker = _worker(json.loads(config_json), bridge)
    delivered = False
    if worker is not None:
        delivered = await worker.opt_out()
    if task is not None:
        await asyncio.wait([task], timeout=5.0)
    return delivered
