"""Both sessions in a secure round, in memory: the states of ``protocol/states.py`` for a task
with ``secure``, the ``secagg_*`` messages each side may take and send, and the masked frame
that follows ``secagg_masked``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dandelion.protocol import (
    Acked,
    Assigned,
    CoordinatorSession,
    CoordinatorState,
    FrameHeader,
    Hello,
    LocalProtocolError,
    ProtocolViolation,
    SecAggArrived,
    SecAggReceived,
    Task,
    UnexpectedMessage,
    Welcome,
    WorkerSession,
    WorkerState,
    encode_frame,
    parse_message,
)
from dandelion.protocol.messages import Ack
from dandelion.protocol.secagg.messages import (
    Abort,
    Advertise,
    MaskedInput,
    Setup,
    encode_secagg,
)
from dandelion.transport.validation import SchemaValidator

TASK = Task(
    task="sec",
    round=1,
    nonce="n" * 16,
    model_version=0,
    model={"kind": "logreg", "num_features": 1, "num_classes": 2, "param_count": 2},
    objective="page_examples",
    hyper={"clip_norm": 1.0},
    deadline_s=5.0,
    secure=True,
)
SETUP = Setup(
    "sec",
    1,
    index=1,
    n=3,
    degree=2,
    threshold=2,
    seed=bytes(32),
    dimension=2,
    clip_norm=1.0,
    scale_bits=8,
    min_survivors=2,
    nonce="m" * 24,
    timeouts={"advertise_s": 1.0, "share_s": 1.0, "masked_s": 1.0, "unmask_s": 1.0},
)


def _pair() -> tuple[CoordinatorSession, WorkerSession]:
    coordinator, worker = CoordinatorSession(validate=SchemaValidator()), WorkerSession()
    worker.send_hello(
        Hello(worker_id="worker-0001", runtime={"kind": "cpython"}, consent="opted_in")
    )
    for out in worker.data_to_send():
        assert isinstance(out, str)
        coordinator.receive_text(out)
    coordinator.send(Welcome(session="s" * 12, heartbeat_s=20.0, max_message_bytes=2**20))
    for out in coordinator.data_to_send():
        assert isinstance(out, str)
        worker.receive_text(out)
    return coordinator, worker


def _model_frame() -> bytes:
    return encode_frame(FrameHeader("model", "sec", 1, "t" * 16, "float32", (2,)), bytes(8))


def test_a_secure_task_leads_the_worker_through_the_phases_back_to_ready() -> None:
    coordinator, worker = _pair()
    worker.send_checkin()
    coordinator.receive_text(worker.data_to_send()[0])  # type: ignore[arg-type]
    coordinator.send(TASK, _model_frame())
    text, frame = coordinator.data_to_send()
    assert parse_message(text) == TASK  # "secure": true survives the wire
    assert worker.receive_text(text) is None  # type: ignore[arg-type]
    assert isinstance(worker.receive_bytes(frame), Assigned)  # type: ignore[arg-type]
    assert worker.state is WorkerState.AWAIT_SETUP
    with pytest.raises(LocalProtocolError):
        worker.send_update([0.0, 0.0], num_examples=1, unclipped=False)
    coordinator.send_secagg(SETUP)
    event = worker.receive_text(coordinator.data_to_send()[0])  # type: ignore[arg-type]
    assert isinstance(event, SecAggArrived)
    assert event.message == SETUP
    assert worker.state is WorkerState.SECURE
    worker.send_secagg(Advertise("sec", 1, b"\1" * 32, b"\2" * 32))
    got = coordinator.receive_text(worker.data_to_send()[0])  # type: ignore[arg-type]
    assert isinstance(got, SecAggReceived)
    assert got.frame is None
    # secagg_masked waits for its frame, which comes through raw (the round checks it)
    masked = encode_frame(FrameHeader("masked", "sec", 1, "m" * 24, "uint32", (2,)), bytes(8))
    worker.send_secagg(MaskedInput("sec", 1, "m" * 24), masked)
    text, sent = worker.data_to_send()
    assert coordinator.receive_text(text) is None  # type: ignore[arg-type]
    assert coordinator.state is CoordinatorState.AWAIT_MASKED_FRAME
    coordinator.send_secagg(Abort("sec", 1, "too_few_neighbours"))  # a push while waiting
    assert coordinator.state is CoordinatorState.AWAIT_MASKED_FRAME
    got = coordinator.receive_bytes(sent)  # type: ignore[arg-type]
    assert isinstance(got, SecAggReceived)
    assert got.frame == masked
    assert coordinator.state is CoordinatorState.READY
    coordinator.data_to_send()
    coordinator.send(Ack("sec", 1, TASK.nonce))
    assert isinstance(worker.receive_text(coordinator.data_to_send()[0]), Acked)  # type: ignore[arg-type]
    assert worker.state is WorkerState.READY


def test_an_abort_before_the_setup_brings_the_worker_back() -> None:
    worker = WorkerSession()
    worker.state = WorkerState.AWAIT_SETUP
    event = worker.receive_text(encode_secagg(Abort("sec", 1, "too_few_survivors")))
    assert isinstance(event, SecAggArrived)
    assert worker.state is WorkerState.READY


def test_secagg_messages_out_of_turn_are_refused_on_both_sides() -> None:
    coordinator = CoordinatorSession(validate=SchemaValidator())
    advertise = encode_secagg(Advertise("sec", 1, b"\1" * 32, b"\2" * 32))
    event = coordinator.receive_text(advertise)  # before any hello
    assert isinstance(event, ProtocolViolation)
    _, worker = _pair()
    with pytest.raises(UnexpectedMessage):  # no secure task: no setup expected
        worker.receive_text(encode_secagg(SETUP))
    with pytest.raises(LocalProtocolError):
        worker.send_secagg(Advertise("sec", 1, b"\1" * 32, b"\2" * 32))
    coordinator, _ = _pair()
    bad = encode_secagg(replace(SETUP, n=3)).replace('"secagg_setup"', '"secagg_advertise"')
    assert isinstance(coordinator.receive_text(bad), ProtocolViolation)  # schema refuses it
