"""The worker's side of its connection, sans I/O. Runs in Pyodide: standard library only.

Call the ``send_*`` methods to speak, drain :meth:`WorkerSession.data_to_send` onto the socket,
and feed what arrives to :meth:`~WorkerSession.receive_text` / :meth:`~WorkerSession.receive_bytes`,
each of which returns one event (or None while a task waits for its model frame).

``receive_*`` raises :class:`~dandelion.protocol.errors.RemoteProtocolError` when the coordinator
breaks the protocol (the worker then closes and reconnects later); ``send_*`` raises
:class:`~dandelion.protocol.errors.LocalProtocolError` when the state forbids the message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace

from .errors import FrameError, LocalProtocolError, MessageError, UnexpectedMessage
from .events import (
    Acked,
    Assigned,
    ComeBackLater,
    ErrorReceived,
    Event,
    Rejected,
    SecAggArrived,
    Welcomed,
)
from .frames import (
    Dtype,
    FrameHeader,
    TensorFrame,
    decode_frame,
    encode_frame,
    payload_from_floats,
)
from .messages import (
    Ack,
    Checkin,
    ComeBack,
    Error,
    EvalReport,
    Hello,
    Message,
    OptOut,
    Reject,
    Task,
    Update,
    Welcome,
    encode_message,
    parse_message,
)
from .secagg.messages import SECAGG_TYPES, SecAggMessage, encode_secagg, parse_secagg
from .states import FRAME, WORKER_ERROR_FALLBACK, WORKER_RECEIVES, WORKER_SENDS, WorkerState
from .versions import PROTOCOL_VERSION

__all__ = ["WorkerSession"]

_S = WorkerState


class _LastModelFrame:
    """The last model frame decoded, by the identity of its bytes. Every worker of a round
    gets the same bytes (the coordinator encodes a round's model once); where many workers share
    one process (the emulator), they decode it once. ``bytes`` never change, so the same object
    always decodes to the same frame; any other object is decoded afresh."""

    data: bytes | None = None
    frame: TensorFrame | None = None

    @classmethod
    def decode(cls, data: bytes) -> TensorFrame:
        frame = cls.frame
        if frame is None or data is not cls.data or type(data) is not bytes:
            frame = decode_frame(data)
            if type(data) is bytes:
                cls.data, cls.frame = data, frame
        return frame


class WorkerSession:
    """One connection's conversation, as the worker sees it."""

    def __init__(self) -> None:
        self.state = _S.START
        self.welcome: Welcome | None = None
        self.task: Task | None = None
        self._outbox: list[str | bytes] = []

    # -- output --------------------------------------------------------------------------------

    def send_hello(self, hello: Hello) -> None:
        """Send ``hello``; its ``v`` is set to the highest of its ``versions``."""
        self._send(replace(hello, v=max(hello.versions, default=hello.v)))

    def send_checkin(self, checkin: Checkin | None = None) -> None:
        """Send ``checkin``, carrying the connection's version whatever ``checkin.v`` says."""
        v = self._v()
        checkin = checkin or Checkin(v=v)
        self._send(checkin if checkin.v == v else replace(checkin, v=v))

    def send_update(
        self,
        values: Sequence[float],
        *,
        num_examples: int,
        unclipped: bool,
        metrics: dict[str, float] | None = None,
        norm: float | None = None,
    ) -> None:
        """Report the trained update for the current task: the message, then its frame."""
        task = self._current("train")
        dtype: Dtype
        if task.update_dtype == "float16":
            dtype = "float16"
        elif task.update_dtype == "float32":
            dtype = "float32"
        else:
            raise LocalProtocolError(f"cannot encode dtype {task.update_dtype!r}")
        # The frame header's v is the frame format's version, which is 1 in protocol v1.
        header = FrameHeader("update", task.task, task.round, task.nonce, dtype, (len(values),))
        frame = encode_frame(header, payload_from_floats(values, dtype))
        msg = Update(
            task=task.task,
            round=task.round,
            nonce=task.nonce,
            num_examples=num_examples,
            unclipped=unclipped,
            # A diverging local run must not make the report malformed: figures outside the
            # contract's range (or not finite) are left out, the update itself still counts.
            metrics={k: v for k, v in (metrics or {}).items() if _reportable(v)},
            norm=norm if norm is not None and _reportable(norm) else None,
            v=self._v(),
        )
        self._send(msg, frame)

    def send_eval_report(self, *, count: int, loss_sum: float, correct: int) -> None:
        """Report the sums over the held-out examples for the current task of kind
        ``evaluate``: ``count`` examples scored (at least 1), their summed loss, and how many
        were classified right. Raises LocalProtocolError (no such task, or sums that break the
        contract: the worker's own bug, never sent)."""
        task = self._current("evaluate")
        metrics = {"count": count, "loss_sum": loss_sum, "correct": correct}
        try:
            parse_message({"type": "eval_report", "v": 1, "metrics": metrics, **_ids(task)})
        except MessageError as exc:
            raise LocalProtocolError(f"eval_report: {exc}") from None
        self._send(EvalReport(task.task, task.round, task.nonce, metrics, v=self._v()))

    def _current(self, kind: str) -> Task:
        """The task being worked on, if it is of ``kind``. Raises LocalProtocolError."""
        task = self.task
        if task is None or self.state is not _S.TRAINING:
            raise LocalProtocolError(f"no task to report on in state {self.state.value}")
        if task.kind != kind:
            answer = "eval_report" if task.kind == "evaluate" else "update"
            raise LocalProtocolError(f"a task of kind {task.kind!r} is answered with {answer}")
        return task

    def send_secagg(self, msg: SecAggMessage, frame: bytes | None = None) -> None:
        """Answer a secure round's phase (``frame``: the masked frame after ``secagg_masked``).
        Raises LocalProtocolError when the state forbids it."""
        target = WORKER_SENDS[self.state].get(msg.TYPE)
        if target is None:
            raise LocalProtocolError(f"cannot send {msg.TYPE!r} in state {self.state.value}")
        if (msg.TYPE == "secagg_masked") != (frame is not None):
            raise LocalProtocolError("secagg_masked, and only it, is sent with a masked frame")
        self._outbox.append(encode_secagg(msg))
        if frame is not None:
            self._outbox.append(frame)
        self.state = target

    def send_opt_out(self, reason: str | None = None) -> None:
        self._send(OptOut(reason=reason, v=self._v()))

    def _v(self) -> int:
        # Every message after the welcome carries the version it chose; the coordinator drops
        # others with an unsupported_version error.
        return self.welcome.v if self.welcome is not None else PROTOCOL_VERSION

    def _send(self, msg: Message, frame: bytes | None = None) -> None:
        target = WORKER_SENDS[self.state].get(msg.type)
        if target is None:
            raise LocalProtocolError(f"cannot send {msg.type!r} in state {self.state.value}")
        self._outbox.append(encode_message(msg))
        if frame is not None:
            self._outbox.append(frame)
        self.state = target
        if target is not _S.AWAIT_ACK:  # the task is kept only until its update is answered
            self.task = None

    def data_to_send(self) -> list[str | bytes]:
        out, self._outbox = self._outbox, []
        return out

    # -- input ---------------------------------------------------------------------------------

    def receive_text(self, text: str) -> Event | None:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise MessageError(f"not JSON: {exc}") from None
        if isinstance(raw, dict) and raw.get("type") in SECAGG_TYPES:
            secagg = parse_secagg(raw)
            self._move(secagg.TYPE)
            return SecAggArrived(secagg)
        msg = parse_message(raw)
        if isinstance(msg, Error):
            if msg.fatal:
                self.state = _S.CLOSED
            else:
                self.state = WORKER_ERROR_FALLBACK.get(self.state, self.state)
            return ErrorReceived(msg)
        self._move(msg.type)
        if isinstance(msg, Welcome):
            self.welcome = msg
            return Welcomed(msg)
        if isinstance(msg, Task):
            self.task = msg
            return None  # complete once its model frame arrives
        if isinstance(msg, ComeBack):
            return ComeBackLater(msg)
        if isinstance(msg, Ack):
            self.task = None
            return Acked(msg)
        if isinstance(msg, Reject):
            self.task = None
            return Rejected(msg)
        raise UnexpectedMessage(f"a coordinator does not send {msg.type!r}", ref_type=msg.type)

    def receive_bytes(self, data: bytes) -> Event:
        self._move(FRAME)
        task = self.task
        assert task is not None  # the table only allows FRAME after a task
        frame = _LastModelFrame.decode(data)
        head = frame.header
        # A model frame is shared by every worker of the round: its nonce is the round's tag,
        # not this worker's assignment nonce, so only type, task and round must agree.
        if (head.type, head.task, head.round) != ("model", task.task, task.round):
            raise FrameError("model frame does not match its task (type, task, round)")
        if head.count != task.model.get("param_count"):
            raise FrameError(
                f"model frame holds {head.count} values, task announces "
                f"{task.model.get('param_count')}"
            )
        if task.secure:
            self.state = _S.AWAIT_SETUP  # the phases of the secure round come next
        return Assigned(task, frame)

    def _move(self, mtype: str) -> None:
        target = WORKER_RECEIVES[self.state].get(mtype)
        if target is None:
            what = "a tensor frame" if mtype == FRAME else repr(mtype)
            raise UnexpectedMessage(f"{what} is not expected in state {self.state.value}")
        self.state = target


def _ids(task: Task) -> dict[str, object]:
    return {"task": task.task, "round": task.round, "nonce": task.nonce}


def _reportable(value: float) -> bool:
    """Whether a reported figure fits the contract: finite, and within ±10^9."""
    return math.isfinite(value) and abs(value) <= 1e9
