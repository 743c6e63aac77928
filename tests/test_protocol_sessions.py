"""Both sides of the conversation against each other, in memory: no sockets, no clock."""

from __future__ import annotations

import json

import pytest

from dandelion.protocol import (
    Ack,
    Acked,
    Assigned,
    Checkin,
    CheckinReceived,
    ComeBack,
    ComeBackLater,
    CoordinatorSession,
    CoordinatorState,
    Error,
    ErrorReceived,
    EvalReportReceived,
    FrameError,
    FrameHeader,
    Hello,
    HelloReceived,
    LocalProtocolError,
    OptOutReceived,
    ProtocolViolation,
    Reject,
    Rejected,
    RetryWindow,
    Task,
    UnexpectedMessage,
    UpdateReceived,
    Welcome,
    Welcomed,
    WorkerSession,
    WorkerState,
    encode_frame,
    floats_from_payload,
    payload_from_floats,
)

MODEL = {"kind": "logreg", "num_features": 3, "num_classes": 2, "hidden": 0, "param_count": 4}


class Pair:
    """A worker session and a coordinator session joined by lists."""

    def __init__(self) -> None:
        self.worker = WorkerSession()
        self.coord = CoordinatorSession()

    def to_coordinator(self) -> list[object]:
        events = []
        for data in self.worker.data_to_send():
            recv = self.coord.receive_text if isinstance(data, str) else self.coord.receive_bytes
            events.append(recv(data))  # type: ignore[arg-type]
        return [e for e in events if e is not None]

    def to_worker(self) -> list[object]:
        events = []
        for data in self.coord.data_to_send():
            recv = self.worker.receive_text if isinstance(data, str) else self.worker.receive_bytes
            events.append(recv(data))  # type: ignore[arg-type]
        return [e for e in events if e is not None]

    def handshake(self) -> None:
        self.worker.send_hello(
            Hello(worker_id="worker-0001", runtime={"kind": "cpython"}, consent="opted_in")
        )
        (event,) = self.to_coordinator()
        assert isinstance(event, HelloReceived)
        self.coord.send(Welcome("s1", 20.0, 1 << 20))
        (welcomed,) = self.to_worker()
        assert isinstance(welcomed, Welcomed)

    def assign(self, round_: int = 1, kind: str = "train") -> Assigned:
        self.worker.send_checkin()
        (event,) = self.to_coordinator()
        assert isinstance(event, CheckinReceived)
        task = Task(
            task="t",
            round=round_,
            nonce="nonce-000000000001",
            model_version=0,
            model=MODEL,
            objective="revisit_7d",
            hyper={"learning_rate": 0.1, "epochs": 1, "batch_size": 4, "clip_norm": 1.0},
            deadline_s=30.0,
            kind=kind,
            evaluation={"holdout": 0.2, "max_examples": 100, "max_loss": 10.0},
        )
        header = FrameHeader("model", "t", round_, "m0r1", "float32", (4,))
        self.coord.send(task, encode_frame(header, payload_from_floats([0.0, 1.0, 2.0, 3.0])))
        (assigned,) = self.to_worker()
        assert isinstance(assigned, Assigned)
        return assigned


def test_a_whole_round_trip() -> None:
    pair = Pair()
    pair.handshake()
    assigned = pair.assign()
    assert floats_from_payload(assigned.frame.payload) == [0.0, 1.0, 2.0, 3.0]
    assert pair.worker.state is WorkerState.TRAINING
    pair.worker.send_update(
        [0.5, 0.25, 0.0, -1.0], num_examples=7, unclipped=True, metrics={"loss": 0.3}
    )
    (update,) = pair.to_coordinator()
    assert isinstance(update, UpdateReceived)
    assert update.update.num_examples == 7
    assert floats_from_payload(update.frame.payload) == [0.5, 0.25, 0.0, -1.0]
    pair.coord.send(Ack("t", 1, update.update.nonce, RetryWindow(1.0, 5.0)))
    (acked,) = pair.to_worker()
    assert isinstance(acked, Acked)
    assert acked.ack.retry_window == RetryWindow(1.0, 5.0)
    assert pair.worker.state is WorkerState.READY
    assert pair.coord.state is CoordinatorState.READY


def test_come_back_returns_the_worker_to_ready() -> None:
    pair = Pair()
    pair.handshake()
    pair.worker.send_checkin()
    pair.to_coordinator()
    pair.coord.send(ComeBack(RetryWindow(2.0, 9.0), "round_full"))
    (event,) = pair.to_worker()
    assert isinstance(event, ComeBackLater)
    assert pair.worker.state is WorkerState.READY


def test_update_reject_leaves_both_sides_ready() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    (update,) = pair.to_coordinator()
    assert isinstance(update, UpdateReceived)
    pair.coord.send(Reject("stale_round", "round closed", "t", 1, update.update.nonce))
    (event,) = pair.to_worker()
    assert isinstance(event, Rejected)
    assert pair.worker.state is WorkerState.READY


def test_rejected_hello_closes_the_coordinator_side() -> None:
    pair = Pair()
    pair.worker.send_hello(Hello("worker-0001", {"kind": "cpython"}, "opted_out"))
    pair.to_coordinator()
    pair.coord.send(Reject("not_opted_in", "opt in first"))
    (event,) = pair.to_worker()
    assert isinstance(event, Rejected)
    assert pair.worker.state is WorkerState.CLOSED
    assert pair.coord.state is CoordinatorState.CLOSED
    assert pair.coord.close_code == 1008


def _violation(session: CoordinatorSession, data: str | bytes) -> ProtocolViolation:
    event = session.receive_text(data) if isinstance(data, str) else session.receive_bytes(data)
    assert isinstance(event, ProtocolViolation)
    return event


def _sent_error(session: CoordinatorSession) -> dict[str, object]:
    (out,) = session.data_to_send()
    assert isinstance(out, str)
    err = json.loads(out)
    assert err["type"] == "error"
    return dict(err)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"type": "launch", "v": 1}', "malformed"),
        ('{"type": "checkin", "v": 1}', "unexpected_message"),  # before hello
        ('{"type": "hello", "v": 1, "worker_id": 5}', "malformed"),
        ("x" * 70_000, "too_large"),
    ],
)
def test_bad_text_is_answered_with_an_error_and_changes_nothing(text: str, code: str) -> None:
    session = CoordinatorSession()
    event = _violation(session, text)
    assert not event.fatal
    assert _sent_error(session)["code"] == code
    assert session.state is CoordinatorState.AWAIT_HELLO


def test_frame_without_update_is_unexpected() -> None:
    pair = Pair()
    pair.handshake()
    event = _violation(pair.coord, b"\0" * 16)
    assert isinstance(event.error, UnexpectedMessage)
    assert pair.coord.state is CoordinatorState.READY


def test_update_followed_by_text_drops_the_update() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    text, _frame = pair.worker.data_to_send()
    assert pair.coord.receive_text(text) is None  # waits for its frame
    event = _violation(pair.coord, '{"type": "checkin", "v": 1}')
    assert event.error.code == "unexpected_message"
    assert pair.coord.state is CoordinatorState.READY


def test_update_frame_must_match_its_message() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    text, _frame = pair.worker.data_to_send()
    pair.coord.receive_text(text)
    other = encode_frame(
        FrameHeader("update", "t", 1, "someone-elses-nonce", "float32", (4,)), b"\0" * 16
    )
    event = _violation(pair.coord, other)
    assert isinstance(event.error, FrameError)


def test_too_many_errors_close_the_session() -> None:
    session = CoordinatorSession(max_errors=3)
    for _ in range(2):
        assert not _violation(session, "nope").fatal
    last = _violation(session, "nope")
    assert last.fatal
    assert session.state is CoordinatorState.CLOSED
    assert session.close_code == 1008
    assert session.receive_text("nope") is None


def test_opt_out_closes_normally() -> None:
    pair = Pair()
    pair.handshake()
    pair.worker.send_opt_out("changed my mind")
    (event,) = pair.to_coordinator()
    assert isinstance(event, OptOutReceived)
    assert pair.coord.close_code == 1000
    assert pair.worker.state is WorkerState.CLOSED


def test_validator_is_consulted_before_parsing() -> None:
    session = CoordinatorSession(validate=lambda raw: "hello: worker_id: too short")
    _violation(session, '{"type": "hello", "v": 1}')
    err = _sent_error(session)
    assert err["detail"] == "hello: worker_id: too short"
    assert err["ref_type"] == "hello"


@pytest.mark.parametrize(
    "send",
    [
        lambda s: s.send(Welcome("s", 1.0, 10)),  # before hello
        lambda s: s.send(Ack("t", 1, "n")),
        lambda s: s.send(ComeBack(RetryWindow(1, 2), "no_task")),
    ],
)
def test_coordinator_cannot_send_out_of_turn(send: object) -> None:
    with pytest.raises(LocalProtocolError):
        send(CoordinatorSession())  # type: ignore[operator]


def test_task_must_come_with_its_frame() -> None:
    pair = Pair()
    pair.handshake()
    task = Task("t", 1, "n" * 16, 0, MODEL, "o", {}, 1.0)
    with pytest.raises(LocalProtocolError):
        pair.coord.send(task)


def test_worker_cannot_update_without_a_task() -> None:
    pair = Pair()
    pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.worker.send_update([0.0], num_examples=1, unclipped=True)


def test_worker_refuses_a_model_frame_of_the_wrong_size() -> None:
    pair = Pair()
    pair.handshake()
    pair.worker.send_checkin()
    pair.to_coordinator()
    task = Task("t", 1, "n" * 16, 0, MODEL, "o", {}, 1.0)
    header = FrameHeader("model", "t", 1, "m", "float32", (3,))
    pair.coord.send(task, encode_frame(header, b"\0" * 12))
    with pytest.raises(FrameError):
        pair.to_worker()


def test_worker_falls_back_after_a_non_fatal_error() -> None:
    pair = Pair()
    pair.handshake()
    pair.worker.send_checkin()
    pair.to_coordinator()
    pair.coord.send(Error("rate_limited", "slow down"))
    (event,) = pair.to_worker()
    assert isinstance(event, ErrorReceived)
    assert pair.worker.state is WorkerState.READY


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    text = (
        '{"type": "update", "v": 1, "task": "t", "round": 1, "nonce": "nonce-000000000001", '
        f'"num_examples": 3, "metrics": {{"loss": {constant}}}, "unclipped": true}}'
    )
    event = _violation(pair.coord, text)
    assert not event.fatal
    err = _sent_error(pair.coord)
    assert err["code"] == "malformed"
    assert constant in str(err["detail"])
    assert "NaN, Infinity and -Infinity are not JSON numbers" in str(err["detail"])
    # Nothing waits for a frame: the update was refused, not held.
    assert pair.coord.state is CoordinatorState.READY
    assert isinstance(_violation(pair.coord, b"\0" * 16).error, UnexpectedMessage)


def test_messages_after_welcome_must_carry_the_connection_version() -> None:
    pair = Pair()
    pair.handshake()
    assert pair.coord.version == 1
    event = _violation(pair.coord, '{"type": "checkin", "v": 2}')
    assert not event.fatal
    err = _sent_error(pair.coord)
    assert (err["code"], err["ref_type"], err["fatal"]) == ("unsupported_version", "checkin", False)
    assert "version 1" in str(err["detail"])
    assert pair.coord.state is CoordinatorState.READY
    assert isinstance(pair.coord.receive_text('{"type": "checkin", "v": 1}'), CheckinReceived)


def test_a_version_mismatch_between_update_and_frame_drops_the_update() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    text, frame = pair.worker.data_to_send()
    assert pair.coord.receive_text(text) is None
    assert _violation(pair.coord, '{"type": "opt_out", "v": 2}').error.code == (
        "unsupported_version"
    )
    assert pair.coord.state is CoordinatorState.READY
    assert isinstance(_violation(pair.coord, frame).error, UnexpectedMessage)


def test_the_worker_sends_the_version_the_welcome_chose() -> None:
    pair = Pair()
    pair.worker.send_hello(Hello("worker-0001", {"kind": "cpython"}, "opted_in", versions=(1, 2)))
    (hello,) = pair.worker.data_to_send()
    assert json.loads(hello)["v"] == 2  # hello: the highest version it speaks
    pair.worker.receive_text(
        json.dumps(
            {
                "type": "welcome",
                "v": 2,
                "session": "s",
                "heartbeat_s": 20,
                "max_message_bytes": 1 << 20,
                "update_dtypes": ["float32"],
            }
        )
    )
    pair.worker.send_checkin(Checkin(v=1))
    pair.worker.send_opt_out()
    sent = [json.loads(m) for m in pair.worker.data_to_send() if isinstance(m, str)]
    assert [(m["type"], m["v"]) for m in sent] == [("checkin", 2), ("opt_out", 2)]


# -- evaluation rounds: a task of kind "evaluate" is answered with eval_report ------------------


def test_an_evaluation_task_is_answered_with_sums_and_an_ack() -> None:
    pair = Pair()
    pair.handshake()
    assigned = pair.assign(kind="evaluate")
    assert assigned.task.kind == "evaluate"
    assert assigned.task.evaluation == {"holdout": 0.2, "max_examples": 100, "max_loss": 10.0}
    pair.worker.send_eval_report(count=12, loss_sum=4.5, correct=9)
    (only,) = pair.worker.data_to_send()  # one text message: no frame follows
    assert isinstance(only, str)
    event = pair.coord.receive_text(only)
    assert isinstance(event, EvalReportReceived)
    report = event.report
    assert (report.task, report.round, report.nonce) == ("t", 1, assigned.task.nonce)
    assert report.metrics == {"count": 12, "loss_sum": 4.5, "correct": 9}
    assert pair.coord.state is CoordinatorState.READY
    assert pair.worker.state is WorkerState.AWAIT_ACK
    pair.coord.send(Ack("t", 1, report.nonce))
    (acked,) = pair.to_worker()
    assert isinstance(acked, Acked)
    assert pair.worker.state is WorkerState.READY


def test_a_task_without_kind_trains_and_says_so_on_the_wire_as_before() -> None:
    pair = Pair()
    pair.handshake()
    assigned = pair.assign()
    assert assigned.task.kind == "train"
    assert "kind" not in assigned.task.to_dict()  # old workers read it as they always did


def test_each_kind_of_task_takes_only_its_own_answer() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign(kind="evaluate")
    with pytest.raises(LocalProtocolError, match="eval_report"):
        pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    with pytest.raises(LocalProtocolError, match="count"):  # the contract, checked before sending
        pair.worker.send_eval_report(count=0, loss_sum=0.0, correct=0)
    with pytest.raises(LocalProtocolError, match="loss_sum"):
        pair.worker.send_eval_report(count=1, loss_sum=float("nan"), correct=0)
    assert pair.worker.data_to_send() == []
    other = Pair()
    other.handshake()
    other.assign()
    with pytest.raises(LocalProtocolError, match="update"):
        other.worker.send_eval_report(count=3, loss_sum=1.0, correct=2)


@pytest.mark.parametrize(
    "metrics",
    [
        {"count": 0, "loss_sum": 1.0, "correct": 0},
        {"count": 3, "loss_sum": -1.0, "correct": 1},
        {"count": 3, "loss_sum": 1.0, "correct": 1.5},
        {"count": 3, "loss_sum": 1.0},
        {"count": "3", "loss_sum": 1.0, "correct": 1},
        {"loss": 0.4, "accuracy": 0.8},
    ],
)
def test_a_malformed_eval_report_is_an_error_and_the_conversation_goes_on(
    metrics: dict[str, object],
) -> None:
    pair = Pair()
    pair.handshake()
    message = {"type": "eval_report", "v": 1, "task": "t", "round": 1, "nonce": "n" * 16}
    event = _violation(pair.coord, json.dumps({**message, "metrics": metrics}))
    assert not event.fatal
    error = _sent_error(pair.coord)
    assert (error["code"], error["ref_type"]) == ("malformed", "eval_report")
    assert "metrics" in str(error["detail"])
    assert pair.coord.state is CoordinatorState.READY
    good = {**message, "metrics": {"count": 3, "loss_sum": 1.0, "correct": 2}}
    assert isinstance(pair.coord.receive_text(json.dumps(good)), EvalReportReceived)


def test_an_eval_report_between_an_update_and_its_frame_is_out_of_turn() -> None:
    pair = Pair()
    pair.handshake()
    pair.assign()
    pair.worker.send_update([0.0] * 4, num_examples=1, unclipped=True)
    text, _frame = pair.worker.data_to_send()
    pair.coord.receive_text(text)
    report = {
        "type": "eval_report",
        "v": 1,
        "task": "t",
        "round": 1,
        "nonce": "n" * 16,
        "metrics": {"count": 3, "loss_sum": 1.0, "correct": 2},
    }
    event = _violation(pair.coord, json.dumps(report))
    assert event.error.code == "unexpected_message"
    assert pair.coord.state is CoordinatorState.READY


def test_workers_given_the_same_model_bytes_decode_them_once_and_still_check_them() -> None:
    frame = encode_frame(
        FrameHeader("model", "t", 1, "m0r1", "float32", (4,)),
        payload_from_floats([0.0, 1.0, 2.0, 3.0]),
    )
    task = Task("t", 1, "n" * 16, 0, MODEL, "o", {}, 1.0)
    got = []
    for _ in range(2):
        pair = Pair()
        pair.handshake()
        pair.worker.send_checkin()
        pair.to_coordinator()
        pair.coord.send(task, frame)
        (assigned,) = pair.to_worker()
        assert isinstance(assigned, Assigned)
        got.append(assigned.frame)
    assert got[0] is got[1]  # one decode for both
    assert floats_from_payload(got[1].payload, "float32") == [0.0, 1.0, 2.0, 3.0]
    # The same bytes for another round's task: decoded before, refused all the same.
    pair = Pair()
    pair.handshake()
    pair.worker.send_checkin()
    pair.to_coordinator()
    pair.coord.send(Task("t", 2, "n" * 16, 0, MODEL, "o", {}, 1.0), frame)
    with pytest.raises(FrameError, match="does not match"):
        pair.to_worker()
    # Equal bytes in another object are decoded afresh.
    pair = Pair()
    pair.handshake()
    pair.worker.send_checkin()
    pair.to_coordinator()
    pair.coord.send(task, bytes(bytearray(frame)))
    (assigned,) = pair.to_worker()
    assert isinstance(assigned, Assigned) and assigned.frame is not got[0]
    assert assigned.frame.header == got[0].header
