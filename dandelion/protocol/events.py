"""Events a session hands to its owner after taking in a message.

Frozen values: the owner decides what to do with them and answers through the session's send
methods. Coordinator-side events end in ``Received``; worker-side events name what happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemoteProtocolError
from .frames import TensorFrame
from .messages import (
    Ack,
    Checkin,
    ComeBack,
    Error,
    EvalReport,
    Hello,
    OptOut,
    Reject,
    Task,
    Update,
    Welcome,
)
from .secagg.messages import SecAggMessage

__all__ = [
    "Acked",
    "Assigned",
    "CheckinReceived",
    "ComeBackLater",
    "ErrorReceived",
    "EvalReportReceived",
    "Event",
    "HelloReceived",
    "OptOutReceived",
    "ProtocolViolation",
    "Rejected",
    "SecAggArrived",
    "SecAggReceived",
    "UpdateReceived",
    "Welcomed",
]


class Event:
    """Base of every session event."""


# -- coordinator side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloReceived(Event):
    hello: Hello


@dataclass(frozen=True, slots=True)
class CheckinReceived(Event):
    checkin: Checkin


@dataclass(frozen=True, slots=True)
class UpdateReceived(Event):
    """An update message and its tensor frame, already matched to each other."""

    update: Update
    frame: TensorFrame


@dataclass(frozen=True, slots=True)
class EvalReportReceived(Event):
    """The sums a worker computed on its held-out examples for an evaluation round."""

    report: EvalReport


@dataclass(frozen=True, slots=True)
class SecAggReceived(Event):
    """A secure round's message from the worker; ``frame`` is the raw ``masked`` frame that
    follows ``secagg_masked`` (the round's state machine checks it), None for the others."""

    message: SecAggMessage
    frame: bytes | None = None


@dataclass(frozen=True, slots=True)
class OptOutReceived(Event):
    opt_out: OptOut


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The peer broke the protocol; an ``error`` is queued. ``fatal``: the session closes."""

    error: RemoteProtocolError
    fatal: bool


# -- worker side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcomed(Event):
    welcome: Welcome


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """A reject: of the hello (the session is closed) or of an update (it is ready again)."""

    reject: Reject


@dataclass(frozen=True, slots=True)
class Assigned(Event):
    """A task and its model frame."""

    task: Task
    frame: TensorFrame


@dataclass(frozen=True, slots=True)
class ComeBackLater(Event):
    come_back: ComeBack


@dataclass(frozen=True, slots=True)
class Acked(Event):
    ack: Ack


@dataclass(frozen=True, slots=True)
class SecAggArrived(Event):
    """A secure round's message from the coordinator (a ``secagg_abort`` has already brought
    the session back to READY)."""

    message: SecAggMessage


@dataclass(frozen=True, slots=True)
class ErrorReceived(Event):
    error: Error
