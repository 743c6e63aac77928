"""The emulator's front door: one call for every mode and backend (``dandelion emulate`` uses it).

from dandelion.emulation import PopulationConfig, emulate
result = emulate(PopulationConfig(size=10_000, rounds=20), mode="inprocess")
result.summary()["final_accuracy"]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .localdata import DataSource
from .population import PopulationConfig, PopulationConfigError
from .results import RunResult
from .trace import Trace

if TYPE_CHECKING:
    from ..plugins import PluginPackage
    from .plan import EmulationPlan

__all__ = ["EmulateOptions", "EmulationError", "emulate"]

MODES = ("inprocess", "websocket")
BACKENDS = ("local", "processes", "ray")


class EmulationError(RuntimeError):
    """A WebSocket run that cannot go on, in one line saying what to do: the coordinator it
    started exited (its own error in the message), the worker bundle for it could not be
    built, or the coordinator at ``url`` assigned another task than the devices' data is
    built for."""


@dataclass(frozen=True)
class EmulateOptions:
    mode: str = "inprocess"
    backend: str = "local"  # inprocess only: local | processes | ray
    processes: int = 2  # worker processes or Ray actors
    ray_address: str | None = None
    url: str | None = None  # websocket: an existing coordinator
    db: str | None = None  # websocket: that coordinator's state file, to follow its rounds
    coordinator: str = "subprocess"  # websocket without url: subprocess | inprocess
    cache_devices: int = 2000
    progress: bool = True  # a progress bar, and the start-up warnings, on standard error
    max_wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    #: Task packages of your own (``--with``, imported already): in WebSocket mode, the
    #: coordinator started for the run serves a worker bundle built with them.
    plugins: tuple[PluginPackage, ...] = ()


def emulate(
    config: PopulationConfig,
    options: EmulateOptions | None = None,
    *,
    task: dict[str, Any] | None = None,
    source: DataSource | None = None,
    trace: Trace | None = None,
) -> RunResult:
    """Run one emulation. Raises PopulationConfigError for a population or task that cannot
    run (the message names the field), EmulationError for a WebSocket run whose coordinator
    cannot run it. What the start-up check finds wrong (a population that
    cannot meet the task's goal, a privacy budget that does not last the rounds) is printed
    on standard error before the run (with ``progress``) and kept in ``result.warnings``.
    ``source``: the devices' data (a ``TableSource``; default: synthetic); ``trace``: when
    devices are online, and their bandwidth and speed (in-process mode only)."""
    options = options or EmulateOptions()
    if options.mode not in MODES:
        raise PopulationConfigError(f"mode: one of {list(MODES)}, not {options.mode!r}")
    if options.backend not in BACKENDS:
        raise PopulationConfigError(f"backend: one of {list(BACKENDS)}, not {options.backend!r}")
    if options.processes < 1:
        raise PopulationConfigError("processes: at least 1")
    from .feasibility import start_check
    from .plan import make_plan
    from .provenance import run_info

    if trace is not None and options.mode != "inprocess":
        raise PopulationConfigError(
            "trace: replayed in-process only (WebSocket mode keeps every device online)"
        )
    plan = make_plan(config, task=task, source=source, trace=trace)
    check = start_check(plan, options.mode)
    if options.progress:
        for line in check.warnings:
            print(f"warning: {line}", file=sys.stderr, flush=True)
    started_at = time.time()
    result = _run(plan, options, check.doomed)
    shaping = _shaping(options)
    if trace is not None:
        shaping["trace"] = trace.describe()  # by its bytes' SHA-256, never its path
    result.info = run_info(plan, shaping)
    result.warnings = [*check.warnings, *result.warnings]
    result.started_at = started_at
    return result


def _shaping(options: EmulateOptions) -> dict[str, Any]:
    """The options that shape a run's rounds (not where it connects or its wall limit)."""
    shaping: dict[str, Any] = {"settings": dict(sorted(options.settings.items()))}
    if options.mode == "inprocess":
        shaping["cache_devices"] = options.cache_devices
        if options.backend != "local":
            shaping["processes"] = options.processes
    else:
        shaping["coordinator"] = "url" if options.url is not None else options.coordinator
    return shaping


def _run(plan: EmulationPlan, options: EmulateOptions, doomed: bool) -> RunResult:
    if options.mode == "inprocess":
        from .inprocess import InProcessOptions, run_inprocess

        return run_inprocess(
            plan,
            InProcessOptions(
                backend=options.backend,
                processes=options.processes,
                ray_address=options.ray_address,
                cache_devices=options.cache_devices,
                progress=options.progress,
                settings=dict(options.settings),
                max_wall_s=options.max_wall_s,
                doomed=doomed,
            ),
        )
    from .websocket import WebSocketOptions, run_websocket

    return run_websocket(
        plan,
        WebSocketOptions(
            url=options.url,
            db=options.db,
            coordinator=options.coordinator,
            progress=options.progress,
            max_wall_s=options.max_wall_s or 1800.0,
            settings=dict(options.settings),
            doomed=doomed,
            plugins=options.plugins,
        ),
    )
