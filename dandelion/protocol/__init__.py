"""Dandelion's wire protocol, sans I/O: messages, tensor frames and both sides' sessions.

Standard library only, so that it imports inside Pyodide. Importing this package must not load
asyncio event loops, sockets, numpy or aiohttp; a test checks it.
"""

from __future__ import annotations

from .coordinator_session import CoordinatorSession, Validator
from .errors import (
    DandelionProtocolError,
    FrameError,
    LocalProtocolError,
    MessageError,
    MessageTooLarge,
    RateLimited,
    RemoteProtocolError,
    UnexpectedMessage,
    VersionMismatch,
)
from .events import (
    Acked,
    Assigned,
    CheckinReceived,
    ComeBackLater,
    ErrorReceived,
    Event,
    HelloReceived,
    OptOutReceived,
    ProtocolViolation,
    Rejected,
    UpdateReceived,
    Welcomed,
)
from .frames import (
    FrameHeader,
    TensorFrame,
    decode_frame,
    encode_frame,
    floats_from_payload,
    payload_from_floats,
)
from .messages import (
    MESSAGE_TYPES,
    Ack,
    Checkin,
    ComeBack,
    Error,
    Hello,
    Message,
    OptOut,
    Reject,
    RetryWindow,
    Task,
    Update,
    Welcome,
    encode_message,
    parse_message,
)
from .states import CoordinatorState, WorkerState
from .versions import PROTOCOL_VERSION, SUPPORTED_VERSIONS, choose_version
from .worker_session import WorkerSession

__all__ = [
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Ack",
    "Acked",
    "Assigned",
    "Checkin",
    "CheckinReceived",
    "ComeBack",
    "ComeBackLater",
    "CoordinatorSession",
    "CoordinatorState",
    "DandelionProtocolError",
    "Error",
    "ErrorReceived",
    "Event",
    "FrameError",
    "FrameHeader",
    "Hello",
    "HelloReceived",
    "LocalProtocolError",
    "Message",
    "MessageError",
    "MessageTooLarge",
    "OptOut",
    "OptOutReceived",
    "ProtocolViolation",
    "RateLimited",
    "Reject",
    "Rejected",
    "RemoteProtocolError",
    "RetryWindow",
    "Task",
    "TensorFrame",
    "UnexpectedMessage",
    "Update",
    "UpdateReceived",
    "Validator",
    "VersionMismatch",
    "Welcome",
    "Welcomed",
    "WorkerSession",
    "WorkerState",
    "choose_version",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "floats_from_payload",
    "parse_message",
    "payload_from_floats",
]
