"""Emulation tools: the demo now; large populations come later."""

from __future__ import annotations

__all__: list[str] = []
