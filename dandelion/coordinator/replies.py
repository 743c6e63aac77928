"""The one answer type of the coordinator's handlers.

Rules of this file: plain data. A :class:`Reply` says what to send back on the connection that
spoke (a message and, for a task, its model frame), and what the connection should do besides:
become the worker's connection (``claim``), close the worker's other connections (``revoke``,
after an opt-out), close itself (``close_code``), or allow the worker a longer silence
(``quiet_s``, while it trains). The conversation driver (``dandelion.transport.driver``) acts on
it the same way for every transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import Message

__all__ = ["CLOSE_TRY_LATER", "Reply"]

#: WebSocket close code "try again later", for a hello the coordinator cannot answer now.
CLOSE_TRY_LATER = 1013


@dataclass(frozen=True, slots=True)
class Reply:
    message: Message | None = None
    frame: bytes | None = None
    claim: bool = False
    revoke: bool = False
    close_code: int | None = None
    close_reason: str = ""
    quiet_s: float | None = None
