"""The built-in objectives (docs/tasks.md): ``revisit_7d`` and ``page_examples``."""

from __future__ import annotations

from ..objective import Objective
from .page_examples import PageExamples
from .revisit import Revisit

__all__ = ["BUILTIN_OBJECTIVES"]

BUILTIN_OBJECTIVES: dict[str, Objective] = {
    "revisit_7d": Revisit(),
    "page_examples": PageExamples(),
}
