"""The built-in objectives (docs/tasks.md): ``revisit_7d``, ``next_site``, ``tab_switch`` and
``page_examples``."""

from __future__ import annotations

from ..objective import Objective
from .next_site import NextSite
from .page_examples import PageExamples
from .revisit import Revisit
from .tab_switch import TabSwitch

__all__ = ["BUILTIN_OBJECTIVES"]

BUILTIN_OBJECTIVES: dict[str, Objective] = {
    "revisit_7d": Revisit(),
    "next_site": NextSite(),
    "tab_switch": TabSwitch(),
    "page_examples": PageExamples(),
}
