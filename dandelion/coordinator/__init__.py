"""The coordinator: tasks, rounds, selection, pace steering and the commit of each model."""

from __future__ import annotations

from .coordinator import Coordinator, RoundListener, create_task
from .pace import PaceSteering
from .rounds import RoundState
from .runtime import RoundOutcome, TaskRuntime
from .taskconfig import RoundPlan, ServerConfig, TaskConfig, TaskConfigError, load_task_file

__all__ = [
    "Coordinator",
    "PaceSteering",
    "RoundListener",
    "RoundOutcome",
    "RoundPlan",
    "RoundState",
    "ServerConfig",
    "TaskConfig",
    "TaskConfigError",
    "TaskRuntime",
    "create_task",
    "load_task_file",
]
