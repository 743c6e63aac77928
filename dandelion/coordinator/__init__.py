"""The coordinator: tasks, rounds, selection, pace steering and the commit of each model; one
process on its own, or one shard of a cluster through the round-coordination seam
(``coordination.py``)."""

from __future__ import annotations

from .coordination import LocalRounds, RoundCoordination
from .coordinator import Coordinator, RoundListener
from .entropy import Entropy, SeededEntropy
from .evaluation import EvalRound
from .lifecycle import CoordinatorStopping, RoundAbandoned, RoundLifecycle
from .pace import HEADROOM, PaceSteering
from .registry import TaskRegistry, create_task
from .replies import CLOSE_TRY_LATER, Reply
from .rounds import RoundState
from .runtime import Round, RoundOutcome, TaskRuntime
from .taskchanges import ACTIONS, TaskChangeError, change_status, edit_task
from .taskconfig import (
    EvaluationPlan,
    RoundPlan,
    ServerConfig,
    TaskConfig,
    TaskConfigError,
    load_task_file,
)

__all__ = [
    "ACTIONS",
    "CLOSE_TRY_LATER",
    "HEADROOM",
    "Coordinator",
    "CoordinatorStopping",
    "Entropy",
    "EvalRound",
    "EvaluationPlan",
    "LocalRounds",
    "PaceSteering",
    "Reply",
    "Round",
    "RoundAbandoned",
    "RoundCoordination",
    "RoundLifecycle",
    "RoundListener",
    "RoundOutcome",
    "RoundPlan",
    "RoundState",
    "SeededEntropy",
    "ServerConfig",
    "TaskChangeError",
    "TaskConfig",
    "TaskConfigError",
    "TaskRegistry",
    "TaskRuntime",
    "change_status",
    "create_task",
    "edit_task",
    "load_task_file",
]
