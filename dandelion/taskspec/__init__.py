"""What a task *is*: model specs, parameter initialisation, signals, the objective interface
and the registry of objectives and models.

Standard library only, and importable in Pyodide: it ships in the worker wheel, below both the
coordinator and the worker (the layers are import-linter contracts in ``pyproject.toml``). A
task package of your own subclasses :class:`Objective` and :class:`Model` and registers them
(docs/tasks.md).
"""

from __future__ import annotations

from .models import Example, Model, ModelSpec, init_params
from .objective import Objective
from .registry import UnknownPlugin, model, objective, register_model, register_objective
from .signals import (
    Bookmark,
    PageTime,
    Signals,
    SignalsError,
    TabEvent,
    VisitRecord,
    parse_signals,
    register_signal,
)

__all__ = [
    "Bookmark",
    "Example",
    "Model",
    "ModelSpec",
    "Objective",
    "PageTime",
    "Signals",
    "SignalsError",
    "TabEvent",
    "UnknownPlugin",
    "VisitRecord",
    "init_params",
    "model",
    "objective",
    "parse_signals",
    "register_model",
    "register_objective",
    "register_signal",
]
