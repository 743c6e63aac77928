"""Why an update cannot enter the sum."""

from __future__ import annotations

__all__ = ["UpdateRejected"]


class UpdateRejected(Exception):
    """An update refused before it touched the sum. ``reason`` is the wire reject reason:
    ``wrong_shape`` or ``non_finite``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
