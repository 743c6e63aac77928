"""The conversation's legal moves, as tables: one for each side, one row per state.

Rules of this file: it knows message *types* and states, nothing else — not the fields, not the
clock, not what a coordinator decides. A move missing from a table is illegal: received, it is a
remote protocol error (the peer is answered with ``error`` code ``unexpected_message``); sent, it
is a local protocol error (a bug on this side). ``FRAME`` stands for a binary tensor frame.

Coordinator side::

    AWAIT_HELLO ──hello──► NEGOTIATING ──welcome──► READY ──update──► AWAIT_UPDATE_FRAME
         │                      └──reject──► CLOSED  ▲ │ ▲                  │
         │                                           │ │ └──────FRAME───────┘
         │                                           └─┘ checkin, eval_report
    any state but CLOSED ──opt_out──► CLOSED

Worker side::

    START ─hello─► AWAIT_WELCOME ─welcome─► READY ─checkin─► AWAIT_ASSIGNMENT ─task─► AWAIT_MODEL
                      └─reject─► CLOSED     ▲ ▲            └─come_back─► READY           │ FRAME
                                            │ └────── ack / reject ◄── AWAIT_ACK ◄─update─ TRAINING
                                                                           ▲            │
                                                                           └eval_report─┘

A task of kind ``evaluate`` is answered with ``eval_report`` instead of ``update`` (no frame
follows it); which of the two a task wants is the session's check, not this table's.

A secure round (a ``task`` with ``secure``: docs/secure_aggregation.md) replaces the update by
the SecAgg+ phases. On the worker its model frame leads to AWAIT_SETUP instead of TRAINING (the
session's check, as for the kind); ``secagg_setup`` leads to SECURE, where the worker answers
the phases (``secagg_masked`` is followed by a ``masked`` FRAME) until ``ack`` (its masked
vector is in the committed model), ``reject`` or ``secagg_abort`` brings it back to READY. On
the coordinator the phases' messages are legal in READY (whether the sender takes part in the
round is the coordinator's call), and ``secagg_masked`` waits for its FRAME in
AWAIT_MASKED_FRAME; the coordinator pushes the phases' messages in READY and while a frame is
awaited (they change nothing of the conversation's state).
"""

from __future__ import annotations

import enum

__all__ = [
    "COORDINATOR_RECEIVES",
    "COORDINATOR_SENDS",
    "FRAME",
    "WORKER_ERROR_FALLBACK",
    "WORKER_RECEIVES",
    "WORKER_SENDS",
    "CoordinatorState",
    "WorkerState",
]

#: The pseudo message type of a binary tensor frame in the tables below.
FRAME = "<frame>"


class CoordinatorState(enum.Enum):
    AWAIT_HELLO = "await_hello"
    NEGOTIATING = "negotiating"
    READY = "ready"
    AWAIT_UPDATE_FRAME = "await_update_frame"
    AWAIT_MASKED_FRAME = "await_masked_frame"
    CLOSED = "closed"


class WorkerState(enum.Enum):
    START = "start"
    AWAIT_WELCOME = "await_welcome"
    READY = "ready"
    AWAIT_ASSIGNMENT = "await_assignment"
    AWAIT_MODEL = "await_model"
    TRAINING = "training"
    AWAIT_ACK = "await_ack"
    AWAIT_SETUP = "await_setup"  # a secure round's task: waiting for secagg_setup
    SECURE = "secure"  # in a secure round's phases
    CLOSED = "closed"


_C = CoordinatorState
_W = WorkerState

# What the coordinator may receive in each state, and where it leads.
COORDINATOR_RECEIVES: dict[CoordinatorState, dict[str, CoordinatorState]] = {
    _C.AWAIT_HELLO: {"hello": _C.NEGOTIATING},
    _C.NEGOTIATING: {"opt_out": _C.CLOSED},
    # An update is legal in READY whatever the coordinator assigned: whether it is stale, a
    # duplicate or never assigned is the coordinator's call, answered with reject, not an error.
    _C.READY: {
        "checkin": _C.READY,
        "update": _C.AWAIT_UPDATE_FRAME,
        "eval_report": _C.READY,  # a whole report: no frame follows
        "secagg_advertise": _C.READY,
        "secagg_shares": _C.READY,
        "secagg_masked": _C.AWAIT_MASKED_FRAME,
        "secagg_reveal": _C.READY,
        "opt_out": _C.CLOSED,
    },
    _C.AWAIT_UPDATE_FRAME: {FRAME: _C.READY, "opt_out": _C.CLOSED},
    _C.AWAIT_MASKED_FRAME: {FRAME: _C.READY, "opt_out": _C.CLOSED},
    _C.CLOSED: {},
}

#: What the coordinator pushes in a secure round, in READY and while a frame is awaited; the
#: conversation's state stays as it is.
_PUSHED = (
    "secagg_setup",
    "secagg_keys",
    "secagg_relay",
    "secagg_unmask",
    "secagg_abort",
    "ack",
    "reject",  # to a participant the round went on without
)

# What the coordinator may send in each state, and where it leads. ``error`` is legal in every
# open state and changes nothing; a fatal error closes (handled by the session, not the table).
COORDINATOR_SENDS: dict[CoordinatorState, dict[str, CoordinatorState]] = {
    _C.AWAIT_HELLO: {"reject": _C.CLOSED},
    _C.NEGOTIATING: {"welcome": _C.READY, "reject": _C.CLOSED},
    _C.READY: {
        "task": _C.READY,
        "come_back": _C.READY,
        "ack": _C.READY,
        "reject": _C.READY,
        **dict.fromkeys(_PUSHED, _C.READY),
    },
    _C.AWAIT_UPDATE_FRAME: {},
    _C.AWAIT_MASKED_FRAME: dict.fromkeys(_PUSHED, _C.AWAIT_MASKED_FRAME),
    _C.CLOSED: {},
}

WORKER_RECEIVES: dict[WorkerState, dict[str, WorkerState]] = {
    _W.START: {},
    _W.AWAIT_WELCOME: {"welcome": _W.READY, "reject": _W.CLOSED},
    _W.READY: {},
    _W.AWAIT_ASSIGNMENT: {"task": _W.AWAIT_MODEL, "come_back": _W.READY},
    _W.AWAIT_MODEL: {FRAME: _W.TRAINING},
    _W.TRAINING: {},
    _W.AWAIT_ACK: {"ack": _W.READY, "reject": _W.READY},
    _W.AWAIT_SETUP: {"secagg_setup": _W.SECURE, "secagg_abort": _W.READY, "reject": _W.READY},
    _W.SECURE: {
        "secagg_keys": _W.SECURE,
        "secagg_relay": _W.SECURE,
        "secagg_unmask": _W.SECURE,
        "secagg_abort": _W.READY,
        "ack": _W.READY,
        "reject": _W.READY,
    },
    _W.CLOSED: {},
}

WORKER_SENDS: dict[WorkerState, dict[str, WorkerState]] = {
    _W.START: {"hello": _W.AWAIT_WELCOME},
    _W.AWAIT_WELCOME: {},
    _W.READY: {"checkin": _W.AWAIT_ASSIGNMENT, "opt_out": _W.CLOSED},
    _W.AWAIT_ASSIGNMENT: {"opt_out": _W.CLOSED},
    _W.AWAIT_MODEL: {"opt_out": _W.CLOSED},
    _W.TRAINING: {"update": _W.AWAIT_ACK, "eval_report": _W.AWAIT_ACK, "opt_out": _W.CLOSED},
    _W.AWAIT_ACK: {"opt_out": _W.CLOSED},
    _W.AWAIT_SETUP: {"opt_out": _W.CLOSED},
    _W.SECURE: {
        "secagg_advertise": _W.SECURE,
        "secagg_shares": _W.SECURE,
        "secagg_masked": _W.SECURE,  # its masked frame follows at once
        "secagg_reveal": _W.SECURE,
        "opt_out": _W.CLOSED,
    },
    _W.CLOSED: {},
}

# After a non-fatal error from the coordinator, the worker returns to the state it had before
# the message the error answers: its request was dropped, nothing else changed.
WORKER_ERROR_FALLBACK: dict[WorkerState, WorkerState] = {
    _W.AWAIT_ASSIGNMENT: _W.READY,
    _W.AWAIT_ACK: _W.READY,
}
