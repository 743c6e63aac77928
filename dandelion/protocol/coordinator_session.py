"""The coordinator's side of one worker connection, sans I/O.

Feed it whole WebSocket messages with :meth:`CoordinatorSession.receive_text` and
:meth:`~CoordinatorSession.receive_bytes`; each returns at most one event. Answer through the
``send_*`` methods, then drain :meth:`~CoordinatorSession.data_to_send` onto the socket. The
session never awaits, never reads a clock and never touches a socket.

A broken message never raises out of ``receive_*``: the session queues an ``error`` for the peer
and returns :class:`~dandelion.protocol.events.ProtocolViolation`. After ``max_errors`` such
faults the error is fatal and the session closes with 1008. ``send_*`` raises
:class:`~dandelion.protocol.errors.LocalProtocolError` when the state forbids the message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import jsontext
from .errors import (
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
    CheckinReceived,
    EvalReportReceived,
    Event,
    HelloReceived,
    OptOutReceived,
    ProtocolViolation,
    SecAggReceived,
    UpdateReceived,
)
from .frames import decode_frame
from .messages import (
    Checkin,
    Error,
    EvalReport,
    Hello,
    Message,
    OptOut,
    Update,
    encode_message,
    parse_message,
)
from .secagg.messages import SECAGG_TYPES, MaskedInput, SecAggMessage, encode_secagg, parse_secagg
from .states import COORDINATOR_RECEIVES, COORDINATOR_SENDS, FRAME, CoordinatorState

__all__ = ["CLOSE_NORMAL", "CLOSE_POLICY", "CoordinatorSession", "Validator"]

#: Checks a decoded JSON object against the wire schema; returns a reason, or None if valid.
Validator = Callable[[dict[str, Any]], str | None]

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
_S = CoordinatorState
#: The longest text message of each kind a worker may send (the overall cap, max_text_bytes,
#: is checked before parsing). Generous for what the schemas allow; an attacker's 60 KiB
#: hello is refused all the same.
TEXT_LIMITS = {
    "hello": 4096,
    "checkin": 16384,
    "update": 16384,
    "eval_report": 4096,
    "opt_out": 2048,
    "secagg_advertise": 1024,
    "secagg_masked": 1024,
}


class CoordinatorSession:
    """One worker's conversation, as the coordinator sees it."""

    def __init__(
        self,
        *,
        validate: Validator | None = None,
        max_text_bytes: int = 64 * 1024,
        max_errors: int = 10,
    ) -> None:
        self.state = _S.AWAIT_HELLO
        self.worker_id: str | None = None
        self.version: int | None = None
        self.errors = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._validate = validate
        self._max_text = max_text_bytes
        self._max_errors = max_errors
        self._outbox: list[str | bytes] = []
        self._pending_update: Update | None = None
        self._pending_masked: MaskedInput | None = None

    # -- input ---------------------------------------------------------------------------------

    def receive_text(self, text: str) -> Event | None:
        """Take one text message. Returns its event; None if there is nothing to act on yet
        (an ``update`` waits for its frame) or the session is closed."""
        if self.state is _S.CLOSED:
            return None
        try:
            msg = self._parse(text)
            if isinstance(msg, SecAggMessage):
                return self._accept_secagg(msg)
            if self.version is not None and msg.v != self.version:
                # After the welcome every message carries the connection's version.
                raise VersionMismatch(
                    f"this connection speaks protocol version {self.version}, "
                    f"not {msg.v}: message dropped",
                    ref_type=msg.type,
                )
            return self._accept(msg)
        except RemoteProtocolError as exc:
            return self._violation(exc)

    def receive_bytes(self, data: bytes) -> Event | None:
        """Take one binary message: the tensor frame that must follow an ``update``."""
        if self.state is _S.CLOSED:
            return None
        try:
            if self.state is _S.AWAIT_MASKED_FRAME:
                self._move(FRAME)
                masked, self._pending_masked = self._pending_masked, None
                assert masked is not None  # the table only allows this FRAME after one
                return SecAggReceived(masked, data)  # the round's state machine checks it
            self._move(FRAME)
            update, self._pending_update = self._pending_update, None
            assert update is not None  # the table only allows FRAME after an update
            frame = decode_frame(data)
            head = frame.header
            if (head.type, head.task, head.round, head.nonce) != (
                "update",
                update.task,
                update.round,
                update.nonce,
            ):
                raise FrameError(
                    "update frame header does not match its update message "
                    "(type, task, round and nonce must agree)"
                )
            return UpdateReceived(update, frame)
        except RemoteProtocolError as exc:
            return self._violation(exc)

    def refuse(self, detail: str) -> ProtocolViolation:
        """Drop a message unread because the connection sends too fast: answered with a
        ``rate_limited`` error, which counts towards ``max_errors`` like any other."""
        if self.state is _S.CLOSED:
            return ProtocolViolation(RateLimited(detail), True)
        return self._violation(RateLimited(detail))

    def _parse(self, text: str) -> Message | SecAggMessage:
        if len(text) > self._max_text:
            raise MessageTooLarge(
                f"control message of {len(text)} characters exceeds {self._max_text}"
            )
        try:
            # NaN, Infinity and -Infinity are the only constants a Python decoder would take;
            # text without them parses the same either way, and faster without the hook.
            if "NaN" in text or "Infinity" in text:
                raw = json.loads(text, parse_constant=_refuse_constant)
            else:
                raw = jsontext.loads(text)
        except ValueError as exc:
            raise MessageError(f"not JSON: {exc}") from None
        except RecursionError:  # "[[[[…" thousands deep: no message of ours nests like that
            raise MessageError("not JSON this coordinator reads: nested too deeply") from None
        mtype = raw.get("type") if isinstance(raw, dict) else None
        limit = TEXT_LIMITS.get(mtype) if isinstance(mtype, str) else None
        if limit is not None and len(text) > limit:
            raise MessageTooLarge(
                f"{mtype} message of {len(text)} characters exceeds {limit}", ref_type=mtype
            )
        if self._validate is not None and isinstance(raw, dict):
            reason = self._validate(raw)
            if reason is not None:
                mtype = raw.get("type")
                raise MessageError(reason, ref_type=mtype if isinstance(mtype, str) else None)
        if mtype in SECAGG_TYPES:
            return parse_secagg(raw)
        return parse_message(raw)

    def _accept_secagg(self, msg: SecAggMessage) -> Event | None:
        """A secure round's message: legal in READY whatever round the worker is in (that is
        the coordinator's call); ``secagg_masked`` waits for its frame."""
        if self.version is None:
            raise UnexpectedMessage(f"{msg.TYPE!r} before the welcome", ref_type=msg.TYPE)
        self._move(msg.TYPE)
        if isinstance(msg, MaskedInput):
            self._pending_masked = msg
            return None
        return SecAggReceived(msg)

    def _accept(self, msg: Message) -> Event | None:
        self._move(msg.type)
        if isinstance(msg, Hello):
            self.worker_id = msg.worker_id
            return HelloReceived(msg)
        if isinstance(msg, Checkin):
            return CheckinReceived(msg)
        if isinstance(msg, Update):
            self._pending_update = msg
            # No event yet: an update is complete only with its frame.
            return None
        if isinstance(msg, EvalReport):
            return EvalReportReceived(msg)
        if isinstance(msg, OptOut):
            self._close(CLOSE_NORMAL, "opted out")
            return OptOutReceived(msg)
        raise UnexpectedMessage(f"a worker does not send {msg.type!r}", ref_type=msg.type)

    def _move(self, mtype: str) -> None:
        target = COORDINATOR_RECEIVES[self.state].get(mtype)
        if target is None:
            what = "a tensor frame" if mtype == FRAME else repr(mtype)
            raise UnexpectedMessage(
                f"{what} is not expected in state {self.state.value}",
                ref_type=None if mtype == FRAME else mtype,
            )
        self.state = target

    def _violation(self, exc: RemoteProtocolError) -> ProtocolViolation:
        self.errors += 1
        # An update whose frame never came is dropped; the conversation goes on from READY.
        if self.state in (_S.AWAIT_UPDATE_FRAME, _S.AWAIT_MASKED_FRAME):
            self.state = _S.READY
            self._pending_update = None
            self._pending_masked = None
        fatal = self.errors >= self._max_errors
        detail = exc.detail if not fatal else f"{exc.detail} (too many errors; closing)"
        ref_type = exc.ref_type[:32] if exc.ref_type is not None else None  # error.schema.json
        self._outbox.append(
            encode_message(Error(exc.code, detail[:512], fatal=fatal, ref_type=ref_type))
        )
        if fatal:
            self._close(exc.close_code, "too many protocol errors")
        return ProtocolViolation(exc, fatal)

    # -- output --------------------------------------------------------------------------------

    def send(self, msg: Message, frame: bytes | None = None) -> None:
        """Queue ``msg`` (and, for ``task``, its model frame). Raises LocalProtocolError."""
        if isinstance(msg, Error):
            if self.state is _S.CLOSED:
                raise LocalProtocolError("session is closed")
            self._outbox.append(encode_message(msg))
            if msg.fatal:
                self._close(CLOSE_POLICY, msg.detail[:120])
            return
        target = COORDINATOR_SENDS[self.state].get(msg.type)
        if target is None:
            raise LocalProtocolError(f"cannot send {msg.type!r} in state {self.state.value}")
        if (msg.type == "task") != (frame is not None):
            raise LocalProtocolError("a task, and only a task, is sent with a tensor frame")
        if msg.type == "welcome":
            self.version = msg.v
        self._outbox.append(encode_message(msg))
        if frame is not None:
            self._outbox.append(frame)
        self.state = target
        if target is _S.CLOSED:
            self._close(CLOSE_POLICY, msg.type)

    def send_secagg(self, msg: SecAggMessage) -> None:
        """Queue a secure round's message (pushed by the coordinator as the round's phases
        close). Raises LocalProtocolError when the state forbids it."""
        target = COORDINATOR_SENDS[self.state].get(msg.TYPE)
        if target is None:
            raise LocalProtocolError(f"cannot send {msg.TYPE!r} in state {self.state.value}")
        self._outbox.append(encode_secagg(msg))
        self.state = target

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the conversation from this side (shutdown, timeout)."""
        self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.state = _S.CLOSED

    def data_to_send(self) -> list[str | bytes]:
        """Messages queued since the last call, in order."""
        out, self._outbox = self._outbox, []
        return out


def _refuse_constant(name: str) -> float:
    """``json.loads`` calls this for ``NaN``, ``Infinity`` and ``-Infinity``, which Python
    accepts by default and JSON does not: such a message is malformed."""
    raise MessageError(f"not JSON: {name} (NaN, Infinity and -Infinity are not JSON numbers)")
