"""The protocol's exceptions.

::

    DandelionProtocolError            anything the protocol refuses
    ├── LocalProtocolError            we were asked to send something the state forbids (a bug here)
    └── RemoteProtocolError           the peer sent something we cannot accept; carries the answer
        ├── MessageError              a control message that is not JSON or breaks its schema
        │   └── MessageTooLarge       a control message over the size limit
        ├── FrameError                a binary frame whose header or length does not hold up
        ├── UnexpectedMessage         a well-formed message at the wrong point of the conversation
        └── VersionMismatch           a message whose ``v`` is not the connection's version

A :class:`RemoteProtocolError` carries ``code`` (the ``error.code`` sent back on the wire) and
``close_code`` (the WebSocket close code to use when the connection must end).
"""

from __future__ import annotations

__all__ = [
    "DandelionProtocolError",
    "FrameError",
    "LocalProtocolError",
    "MessageError",
    "MessageTooLarge",
    "RateLimited",
    "RemoteProtocolError",
    "UnexpectedMessage",
    "VersionMismatch",
]

#: WebSocket close code for "policy violation" (RFC 6455 section 7.4.1).
CLOSE_POLICY = 1008


class DandelionProtocolError(Exception):
    """Base of every protocol error."""


class LocalProtocolError(DandelionProtocolError):
    """This side tried to do something its session state forbids."""


class RemoteProtocolError(DandelionProtocolError):
    """The peer broke the protocol. ``code`` names the fault on the wire."""

    code = "protocol_error"
    close_code = CLOSE_POLICY

    def __init__(self, detail: str, *, ref_type: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.ref_type = ref_type


class MessageError(RemoteProtocolError):
    """A text message that is not JSON, not an object, or breaks its schema."""

    code = "malformed"


class MessageTooLarge(MessageError):
    """A control message longer than the limit for its kind; it is not parsed."""

    code = "too_large"


class RateLimited(RemoteProtocolError):
    """More messages than the connection's rate allows; the message was dropped unread."""

    code = "rate_limited"


class FrameError(RemoteProtocolError):
    """A binary frame that is truncated, lies about its length, or has a bad header."""

    code = "bad_frame"


class UnexpectedMessage(RemoteProtocolError):
    """A valid message that the conversation's state does not allow now."""

    code = "unexpected_message"


class VersionMismatch(RemoteProtocolError):
    """A message whose ``v`` is not the version the connection chose at ``welcome``."""

    code = "unsupported_version"
