"""Deep fuzzing: sessions that go the whole way into a round, and then break it.

``tests/test_fuzz.py`` throws random messages at the coordinator; almost all of them stop at
the hello gate or the schema. Here every session is valid up to the point where it does damage:
hello → welcome → checkin → task and its model frame, then updates with one thing wrong — the
nonce, the round, the task, the dtype, the shape, what the frame header says, NaN and infinite
values, huge norms, zero vectors, float16 against float32, the edges of ``num_examples`` and
``metrics`` — and the orderings around them: an update without its frame, a frame without its
update, a message in between, a second hello, check-ins while an ack is owed, messages after
``opt_out``, a newer connection of the same worker, pipelined bursts. Sessions run concurrently
on real loopback WebSockets against a live coordinator (``live`` from conftest).

Every answer is checked against the contract (``schemas/README.md``): each input has the error
code and ``ref_type`` it must get, or the reject reasons the round may give it (``stale_round``
and ``duplicate`` besides its own, since rounds move on under the sessions); an ack at most once
per nonce; the fatal error exactly at ``max_errors``; close codes 1000 and 1008 only, with their
reasons; model frames that match their task and hold finite values. Acks may be held back until a
checkpoint (``monitor_k``) or the round's close, so the fuzzer never waits for one in line: an
update is owed an answer, and every update owed one on a connection still open gets it.

How deep the inputs went is counted in the coordinator itself — it runs in this process — by
counting wrappers around the functions each stage goes through: the schema validator, the frame
decoder, ``Coordinator.on_update`` (the update check), ``StreamingSum.add`` (the norm and the
clip) and ``StreamingSum.add`` returning (the aggregate). The counts are printed and written to
``test-artifacts/fuzz_stages.json``. ``DANDELION_FUZZ_SEED`` picks another run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import string
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import websockets

from dandelion.aggregation import kernel
from dandelion.coordinator import Coordinator, TaskConfig
from dandelion.coordinator.rounds import RoundState
from dandelion.protocol import frames
from dandelion.transport import SchemaValidator

from .conftest import Live, LiveFactory, RawClient, scaled, small_task
from .fuzz_messages import (
    BROKEN_FRAMES,
    BROKEN_UPDATES,
    EXTREME_UPDATES,
    FINITE_VALUES,
    NON_FINITE_VALUES,
    Raw,
    frame_bytes,
    header_for,
    to_text,
    update_for,
    valid_frame,
    values,
)
from .test_coordinator_live import assigned, joined, report, update_frame, update_msg

SEED = int(os.environ.get("DANDELION_FUZZ_SEED", "20250607"))
SESSIONS = 20
ACTIONS_PER_SESSION = 300
MAX_ERRORS = 12
#: Two tasks, so that both update dtypes are fuzzed.
TASKS = {"deep32": "float32", "deep16": "float16"}
COME_BACK_REASONS = {
    "no_task",
    "paused",
    "budget_exhausted",
    "not_eligible",
    "round_full",
    "already_reported",
}
ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "fuzz_stages.json"
#: How deep the fuzzer must get for the run to count.
FLOORS = {
    "schema_validator": 2000,
    "frame_decoder": 1000,
    "update_check": 500,
    "clipping": 200,
    "aggregation": 200,
}

ACK_OR_MOVED_ON = frozenset({"ack", "duplicate", "stale_round"})


def _task(name: str, dtype: str) -> TaskConfig:
    # A goal that closes rounds quickly, a little less room (9) than the sessions wanting it
    # (10), a short deadline (held-back acks come within a second or two), and any report
    # enough to complete a round: no round that holds a report is abandoned.
    plan = {"goal": 6, "over_selection": 1.5, "min_reports": 1, "deadline_s": 1.5}
    return TaskConfig.from_dict(small_task(name, **plan).to_dict() | {"update_dtype": dtype})


# -- counting where inputs went, inside the coordinator ------------------------------------------


class Stages:
    """Counting wrappers around the coordinator's own entry points, installed with monkeypatch
    (undone after the test). Each wrapper calls the original and returns what it returns."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self._mp = monkeypatch
        self._method(SchemaValidator, "__call__", "schema_validator")
        self._function(frames.decode_frame, "frame_decoder", ok="frame_decoded")
        self._method(Coordinator, "on_update", "update_check")
        self._function(kernel.l2_norm, "l2_norm")
        self._function(kernel.clip_factor, "clip_factor")
        self._method(kernel.StreamingSum, "add", "clipping", ok="aggregation")
        self._method(RoundState, "check", "round_check")  # reported, not required: may move

    def _counting(self, fn: Callable[..., Any], name: str, ok: str | None) -> Callable[..., Any]:
        counts = self.counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            try:
                result = fn(*args, **kwargs)
            except Exception:
                counts[f"{name} raised"] += 1
                raise
            if ok is not None:
                counts[ok] += 1
            if getattr(result, "clipped", False) is True:  # StreamingSum.add's AddResult
                counts["clipped by the server"] += 1
            return result

        return counted

    def _method(self, owner: type, attr: str, name: str, ok: str | None = None) -> None:
        self._mp.setattr(owner, attr, self._counting(getattr(owner, attr), name, ok))

    def _function(self, fn: Callable[..., Any], name: str, ok: str | None = None) -> None:
        """Wrap ``fn`` in every dandelion module that holds it (``from .x import fn`` copies)."""
        wrapper = self._counting(fn, name, ok)
        for module_name, module in list(sys.modules.items()):
            ours = module_name.partition(".")[0] == "dandelion"
            if ours and getattr(module, fn.__name__, None) is fn:
                self._mp.setattr(module, fn.__name__, wrapper)


# -- what a connection owes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    """An answer a connection owes, in the order the coordinator sends it. ``kind``: error,
    welcome, reject (of a hello), assignment (task or come_back), close. ``code``: the error
    code, reject reason, come_back reason if one is required, or "<close code> <reason>"."""

    kind: str
    code: str | None = None
    ref_type: str | None = None
    what: str = ""


class Closed(NamedTuple):
    code: int | None
    reason: str


class Conn:
    """One WebSocket of a session, with a reader that queues what arrives."""

    def __init__(self, client: RawClient, sent: deque[str], tally: Counter[str]) -> None:
        self.client = client
        self.sent = sent  # the session's record of recent inputs
        self.tally = tally
        self.sync: deque[Expect] = deque()
        self.queue: asyncio.Queue[str | bytes | Closed] = asyncio.Queue()
        self.errors = 0  # errors received: the max_errors-th must be fatal
        self.owed = 0  # updates whose frame matched: each is owed an ack or a reject
        self.answered = 0
        self.model_for: dict[str, Any] | None = None  # a task whose model frame comes next
        self.closed: Closed | None = None
        self.leaving = False  # we close it ourselves
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        ws = self.client.ws
        try:
            async for message in ws:
                self.queue.put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        self.queue.put_nowait(Closed(ws.close_code, ws.close_reason or ""))

    async def send(self, *messages: str | bytes) -> bool:
        """Send in order; False once the connection is closed (the rest are not sent)."""
        for message in messages:
            self.sent.append(_show(message))
            try:
                await self.client.send(message)
            except websockets.ConnectionClosed:
                return False
            self.tally["inputs sent"] += 1
        return True


def _show(message: str | bytes) -> str:
    """An input as the report shows it: text cut short, a frame as its header and length."""
    if isinstance(message, str):
        return message if len(message) <= 400 else f"{message[:400]}… ({len(message)} chars)"
    if len(message) >= 4:
        (hlen,) = struct.unpack_from("<I", message)
        head = message[4 : 4 + min(hlen, 300)]
        return f"<frame {len(message)} bytes, prefix {hlen}, header {head!r}>"
    return f"<binary {message!r}>"


class Ledger:
    """The updates sent for one nonce and the answers they got. Acks may come after later
    rejects, so answers are not matched in order: each answer must go to a different update
    among those it may answer — a bipartite matching, kept as answers come (one augmenting
    path per answer: polynomial, however many updates a nonce gets)."""

    def __init__(self) -> None:
        self.allowed: list[frozenset[str]] = []  # per update sent
        self.answers: list[str] = []
        self._match: list[int | None] = []  # per update: the answer it got

    def sent(self, allowed: frozenset[str]) -> None:
        self.allowed.append(allowed)
        self._match.append(None)

    def unsent(self) -> None:
        """The last update never left (the connection had closed)."""
        self.allowed.pop()
        self._match.pop()

    def may_ack(self) -> bool:
        return any("ack" in a for a in self.allowed)

    def answer(self, outcome: str) -> bool:
        """Record ``outcome``; False if no update sent could have got it."""
        self.answers.append(outcome)
        if self._place(len(self.answers) - 1, set()):
            return True
        self.answers.pop()  # kept out, so that one bad answer is reported once
        return False

    def _place(self, i: int, seen: set[int]) -> bool:
        for j, reasons in enumerate(self.allowed):
            if j in seen or self.answers[i] not in reasons:
                continue
            seen.add(j)
            held = self._match[j]
            if held is None or self._place(held, seen):
                self._match[j] = i
                return True
        return False


@dataclass
class Fuzz:
    """What the sessions share: the target, the tallies, what went wrong."""

    url: str
    max_errors: int
    tally: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    nonces: list[str] = field(default_factory=list)  # others' nonces, to steal


# -- one session ----------------------------------------------------------------------------------


class Session:
    """One worker id: connects, gets tasks, and does damage, checking every answer."""

    def __init__(self, fuzz: Fuzz, n: int) -> None:
        self.fuzz = fuzz
        self.tally = fuzz.tally
        self.rng = random.Random(f"{SEED}-{n}")
        self.worker_id = f"deep-worker-{n:03d}"
        self.prefer = list(TASKS)[n % len(TASKS)]
        self.conn: Conn | None = None
        self.task: dict[str, Any] | None = None
        self.stale: set[str] = set()  # nonces whose round is over
        self.ledgers: dict[str, Ledger] = {}  # per nonce: what each update sent may get
        self.nonce_of: dict[tuple[str, int], str] = {}
        self.recent: deque[str] = deque(maxlen=6)  # the last inputs, for the report
        self.violations = 0

    def violation(self, text: str) -> None:
        self.violations += 1
        recent = " | ".join(self.recent)
        self.fuzz.violations.append(f"{self.worker_id}: {text}"[:600] + f"\n  after: {recent}")

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        steps = 0
        while steps < ACTIONS_PER_SESSION and self.violations < 5:
            steps += 1
            if self.conn is None:
                await self.open()
                continue
            name, action = self.choose()
            self.tally[f"action {name}"] += 1
            await action()
            if self.conn is not None and (self.rng.random() < 0.85 or name == "checkin"):
                await self.settle(self.conn)
            elif self.conn is not None:
                self.poll(self.conn)  # pipelined: the answers are read later
            self._forget_closed()
        await self.finish()

    def choose(self) -> tuple[str, Callable[[], Awaitable[None]]]:
        rng = self.rng
        task = self.task
        fresh = task is not None and not self._spent(task["nonce"])
        table: list[tuple[str, int, Callable[[], Awaitable[None]]]]
        if not fresh and (task is None or rng.random() < 0.75):
            table = [
                ("checkin", 60, self.act_checkin),
                ("bad_text", 8, self.act_bad_text),
                ("frame_alone", 4, self.act_frame_alone),
                ("second_hello", 3, self.act_second_hello),
                ("unknown_task", 3, lambda: self.act_update("unknown_task")),
                ("oversize", 2, self.act_oversize),
            ]
            if task is not None:
                table.append(("duplicate", 6, lambda: self.act_update("valid")))
        else:
            table = [
                ("valid", 24, lambda: self.act_update("valid")),
                ("extreme", 8, lambda: self.act_update("extreme")),
                ("non_finite", 8, lambda: self.act_update("non_finite")),
                ("wrong_dtype", 4, lambda: self.act_update("wrong_dtype")),
                ("wrong_shape", 4, lambda: self.act_update("wrong_shape")),
                ("foreign_nonce", 4, lambda: self.act_update("foreign_nonce")),
                ("wrong_round", 4, lambda: self.act_update("wrong_round")),
                ("other_task", 2, lambda: self.act_update("other_task")),
                ("unknown_task", 2, lambda: self.act_update("unknown_task")),
                ("bad_frame", 12, self.act_bad_frame),
                ("intruder", 6, self.act_intruder),
                ("bad_text", 6, self.act_bad_text),
                ("frame_alone", 2, self.act_frame_alone),
                ("second_hello", 1, self.act_second_hello),
                ("checkin", 4, self.act_checkin),
                ("burst", 5, self.act_burst),
                ("opt_out", 1, self.act_opt_out),
                ("reconnect", 1, self.act_reconnect),
                ("takeover", 1, self.act_takeover),
            ]
        name, _, action = rng.choices(table, weights=[w for _, w, _ in table])[0]
        return name, action

    def _spent(self, nonce: str) -> bool:
        """A valid update was sent for ``nonce``, or its round is over."""
        ledger = self.ledgers.get(nonce)
        return nonce in self.stale or (ledger is not None and ledger.may_ack())

    # -- connecting ----------------------------------------------------------------------------

    def _hello(self, worker_id: str | None = None, **changes: Any) -> str:
        msg = {
            "type": "hello",
            "v": 1,
            "worker_id": worker_id or self.worker_id,
            "versions": [1],
            "runtime": {"kind": "cpython", "version": "3.12"},
            "consent": "opted_in",
        }
        return json.dumps(msg | changes)

    async def _connect(self) -> Conn | None:
        try:
            client = await RawClient.connect(self.fuzz.url)
        except (OSError, websockets.InvalidHandshake) as exc:
            self.violation(f"cannot connect: {exc!r}")
            return None
        self.tally["connections"] += 1
        return Conn(client, self.recent, self.tally)

    async def open(self) -> None:
        """Connect and say hello — sometimes after junk, sometimes to be refused."""
        conn = await self._connect()
        if conn is None:
            return
        self.conn = conn
        rng = self.rng
        if rng.random() < 0.3:  # the hello gate: anything before a welcome is an error
            junk: list[tuple[str | bytes, str, str | None]] = [
                (json.dumps({"type": "checkin", "v": 1}), "unexpected_message", "checkin"),
                (frame_bytes({"v": 1}, b""), "unexpected_message", None),
                (self._hello(worker_id="short"), "malformed", "hello"),
                (self._hello(consent="maybe"), "malformed", "hello"),
                ("{not json", "malformed", None),
            ]
            for message, code, ref in rng.sample(junk, rng.randint(1, 3)):
                await conn.send(message)
                conn.sync.append(Expect("error", code, ref, "before hello"))
        roll = rng.random()
        if roll < 0.04:
            await conn.send(self._hello(consent="opted_out"))
            conn.sync.append(Expect("reject", "not_opted_in", what="opted-out hello"))
        elif roll < 0.07:
            await conn.send(self._hello(versions=[7, 9], v=9))
            conn.sync.append(Expect("reject", "unsupported_version", what="hello of v9"))
        else:
            await conn.send(self._hello())
            conn.sync.append(Expect("welcome", what="hello"))
        await self.settle(conn)
        self._forget_closed()

    def _forget_closed(self) -> None:
        if self.conn is not None and self.conn.closed is not None:
            self.conn = None

    async def finish(self) -> None:
        """Wait for every answer owed on the open connection, then close it."""
        conn = self.conn
        if conn is None:
            return
        await self.settle(conn)
        loop = asyncio.get_running_loop()
        end = loop.time() + scaled(10.0)
        while conn.closed is None and conn.answered < conn.owed and loop.time() < end:
            try:
                item = await asyncio.wait_for(conn.queue.get(), max(0.01, end - loop.time()))
            except TimeoutError:
                continue
            self.take(conn, item)
        if conn.closed is None and conn.answered < conn.owed:
            self.violation(f"{conn.owed - conn.answered} update(s) never answered")
        await self._leave(conn)

    async def _leave(self, conn: Conn) -> None:
        was_open = conn.closed is None
        conn.leaving = True
        await conn.client.close()
        await asyncio.wait_for(conn.reader, scaled(5.0))
        self.poll(conn)
        if was_open:
            lost = max(0, conn.owed - conn.answered)
            self.tally["updates owed on a connection that closed"] += lost
        if self.conn is conn:
            self.conn = None

    # -- reading answers -----------------------------------------------------------------------

    async def settle(self, conn: Conn, timeout: float = 8.0) -> None:
        """Read until every answer owed in order has come (or the connection closed)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + scaled(timeout)
        while conn.closed is None and (conn.sync or conn.model_for is not None):
            left = end - loop.time()
            if left <= 0:
                self.violation(f"no answer in {timeout} s; still owed: {list(conn.sync)[:3]}")
                conn.sync.clear()
                conn.model_for = None
                break
            try:
                item = await asyncio.wait_for(conn.queue.get(), left)
            except TimeoutError:
                continue
            self.take(conn, item)
        self.poll(conn)

    def poll(self, conn: Conn) -> None:
        while not conn.queue.empty():
            self.take(conn, conn.queue.get_nowait())

    def take(self, conn: Conn, item: str | bytes | Closed) -> None:
        if isinstance(item, Closed):
            self._closed(conn, item)
        elif isinstance(item, bytes):
            self._binary(conn, item)
        else:
            self._text(conn, json.loads(item))

    def _closed(self, conn: Conn, item: Closed) -> None:
        conn.closed = item
        self.tally[f"closed {item.code}"] += 1
        said = f"{item.code} {item.reason}"
        head = conn.sync[0] if conn.sync else None
        if item.code == 1011:
            self.violation(f"closed with 1011 ({item.reason}); owed {list(conn.sync)[:3]}")
        elif head is not None and head.kind == "close":
            if head.code != said:
                self.violation(f"closed {said!r}, expected {head.code!r} after {head.what}")
        elif not conn.leaving:
            self.violation(f"closed {said!r} unasked; owed {list(conn.sync)[:3]}")
        if not conn.leaving:
            self.tally["updates owed on a connection that closed"] += conn.owed - conn.answered
        conn.sync.clear()

    def _binary(self, conn: Conn, data: bytes) -> None:
        task, conn.model_for = conn.model_for, None
        if task is None:
            self.violation(f"a binary message of {len(data)} bytes out of turn")
            return
        (hlen,) = struct.unpack_from("<I", data)
        head = json.loads(data[4 : 4 + hlen])
        model = np.frombuffer(data[4 + hlen :], dtype="<f4")
        count = task["model"]["param_count"]
        ok = (head["type"], head["task"], head["round"], head["dtype"], head["shape"]) == (
            "model",
            task["task"],
            task["round"],
            "float32",
            [count],
        )
        if not ok or model.size != count or not np.isfinite(model).all():
            self.violation(f"model frame {head} with {model.size} values for {task['task']}")
        self.tally["model frames"] += 1
        self.task = task

    def _text(self, conn: Conn, msg: dict[str, Any]) -> None:
        mtype = msg.get("type")
        if conn.model_for is not None:
            self.violation(f"{mtype} between a task and its model frame")
            conn.model_for = None
        if mtype in ("ack", "reject") and "nonce" in msg:
            self._answer(conn, msg)
            return
        head = conn.sync.popleft() if conn.sync else Expect("nothing")
        if mtype == "error":
            self._error(conn, msg, head)
        elif mtype == "welcome":
            if head.kind != "welcome" or msg["v"] != 1:
                self.violation(f"welcome {msg}, expected {head}")
        elif mtype == "reject":
            self.tally[f"hello rejected {msg['reason']}"] += 1
            if head.kind != "reject" or msg["reason"] != head.code:
                self.violation(f"reject {msg}, expected {head}")
            conn.sync.appendleft(Expect("close", "1008 reject", what="a refused hello"))
        elif mtype in ("task", "come_back"):
            self._assignment(conn, msg, head)
        else:
            self.violation(f"unasked {str(msg)[:200]}, expected {head}")

    def _error(self, conn: Conn, msg: dict[str, Any], head: Expect) -> None:
        conn.errors += 1
        self.tally[f"error {msg['code']}"] += 1
        wanted = (head.kind, head.code, head.ref_type)
        if ("error", msg["code"], msg.get("ref_type")) != wanted:
            self.violation(f"error {msg}, expected {head}")
        fatal = conn.errors >= self.fuzz.max_errors
        if msg.get("fatal") is not fatal:
            self.violation(f"error {conn.errors} of the connection has fatal={msg.get('fatal')}")
        if msg["code"] == "internal":
            self.violation(f"internal error: {msg}")
        if msg.get("fatal"):
            # What was sent after the fatal one is not read: only the close is owed.
            conn.sync = deque([Expect("close", "1008 too many protocol errors", what="fatal")])

    def _assignment(self, conn: Conn, msg: dict[str, Any], head: Expect) -> None:
        if head.kind != "assignment":
            self.violation(f"{msg['type']} {str(msg)[:200]}, expected {head}")
            return
        if msg["type"] == "come_back":
            reason, window = msg["reason"], msg["retry_window"]
            self.tally[f"come_back {reason}"] += 1
            if reason not in COME_BACK_REASONS or not 0 <= window["min_s"] <= window["max_s"]:
                self.violation(f"come_back {msg}")
            if head.code is not None and reason != head.code:
                self.violation(f"come_back {reason}, expected {head.code} after {head.what}")
            return
        self.tally["tasks"] += 1
        key = (msg["task"], msg["round"])
        if head.code is not None or msg["task"] not in TASKS:
            self.violation(f"task {str(msg)[:200]}, expected {head}")
        # One assignment per worker and round: the same round always comes with the same nonce.
        if self.nonce_of.setdefault(key, msg["nonce"]) != msg["nonce"]:
            self.violation(f"round {key} handed out a second nonce")
        if msg["update_dtype"] != TASKS.get(msg["task"]):
            self.violation(f"task {msg['task']} with update_dtype {msg['update_dtype']}")
        self.fuzz.nonces.append(msg["nonce"])
        conn.model_for = msg

    def _answer(self, conn: Conn, msg: dict[str, Any]) -> None:
        conn.answered += 1
        nonce = msg["nonce"]
        outcome = "ack" if msg["type"] == "ack" else msg["reason"]
        self.tally[f"{msg['type']} {outcome}" if outcome != "ack" else "ack"] += 1
        ledger = self.ledgers.setdefault(nonce, Ledger())
        if outcome == "stale_round":
            self.stale.add(nonce)
        if outcome == "ack" and "ack" in ledger.answers:
            self.violation(f"nonce {nonce} acknowledged twice")
        if not ledger.answer(outcome):
            allowed = [sorted(a) for a in ledger.allowed]
            self.violation(
                f"{outcome} for nonce {nonce}, after {ledger.answers}; the updates sent "
                f"may get {allowed}"
            )

    # -- damage ----------------------------------------------------------------------------------

    def _current(self) -> tuple[dict[str, Any], str, int]:
        """The task held, or (before any) a made-up one: updates for it are not_assigned."""
        task = self.task or {
            "task": "deep32",
            "round": 1,
            "nonce": "N" * 24,
            "update_dtype": "float32",
            "model": {"param_count": 11},
        }
        return task, task["update_dtype"], task["model"]["param_count"]

    async def _owe(self, text: str, frame: bytes, nonce: str, allowed: frozenset[str]) -> None:
        """Send an update whose frame matches it: it is owed an ack or a reject in ``allowed``."""
        conn = self.conn
        assert conn is not None
        ledger = self.ledgers.setdefault(nonce, Ledger())
        ledger.sent(allowed)
        if await conn.send(text, frame):
            conn.owed += 1
            self.tally["updates that reach the round"] += 1
        else:
            ledger.unsent()

    async def _expect(self, expect: Expect, *messages: str | bytes) -> None:
        conn = self.conn
        assert conn is not None
        conn.sync.append(expect)
        await conn.send(*messages)

    def _foreign_nonce(self) -> str:
        rng = self.rng
        mine = set(self.nonce_of.values())
        theirs = [n for n in self.fuzz.nonces[-50:] if n not in mine]
        if theirs and rng.random() < 0.6:
            return rng.choice(theirs)
        alphabet = string.ascii_letters + string.digits + "-_"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(16, 64)))

    async def act_update(self, kind: str) -> None:
        """An update whose frame matches it, with one thing wrong (or nothing, or an edge)."""
        task, dtype, n = self._current()
        rng = self.rng
        changes: dict[str, Any] = {}
        kinds: tuple[str, ...] = FINITE_VALUES
        send_dtype, shape = dtype, [n]
        allowed = ACK_OR_MOVED_ON
        if kind == "extreme":
            changes = dict(rng.choice(EXTREME_UPDATES))
        elif kind == "non_finite":
            kinds = NON_FINITE_VALUES
            allowed = frozenset({"non_finite", "duplicate", "stale_round"})
        elif kind in ("wrong_dtype", "wrong_shape"):
            allowed = frozenset({"wrong_shape", "duplicate", "stale_round"})
            if kind == "wrong_dtype":
                send_dtype = "float16" if dtype == "float32" else "float32"
            else:
                shape = rng.choice([[n - 1], [n + 1], [2 * n], [1], [n, 1], [1, n]])
        elif kind == "foreign_nonce":
            changes = {"nonce": self._foreign_nonce()}
            allowed = frozenset({"not_assigned", "stale_round"})
        elif kind == "wrong_round":
            later = rng.random() < 0.5 or task["round"] == 1
            step = rng.choice([1, 2, 1000, 2**53 - 1 - task["round"]])
            if later:
                changes = {"round": task["round"] + step}
                allowed = frozenset({"not_assigned", "stale_round"})
            else:
                changes = {"round": max(1, task["round"] - step)}
                allowed = frozenset({"stale_round"})
        elif kind == "other_task":
            changes = {"task": next(t for t in TASKS if t != task["task"])}
            allowed = frozenset({"not_assigned", "stale_round"})
        elif kind == "unknown_task":
            changes = {"task": rng.choice(["nosuch", "t1", "deep64", "a" * 64])}
            allowed = frozenset({"not_assigned"})
        update = update_for(task, **changes)
        count = math.prod(shape)
        payload = values(rng.choice(kinds), send_dtype, count, rng)
        if shape == [count] and rng.random() < 0.7:
            frame = valid_frame(update, send_dtype, payload, count, rng)
        else:
            frame = frame_bytes(header_for(update, send_dtype, count) | {"shape": shape}, payload)
        await self._owe(to_text(update), frame, update["nonce"], allowed)

    async def act_bad_frame(self) -> None:
        """A well-formed update, then a frame that breaks the frame rules or does not match."""
        task, dtype, n = self._current()
        name, breaker = self.rng.choice(BROKEN_FRAMES)
        update = update_for(task)
        frame = breaker(update, dtype, n, values("small", dtype, n, self.rng))
        self.tally[f"bad frame {name}"] += 1
        await self._expect(
            Expect("error", "bad_frame", None, f"frame {name}"), to_text(update), frame
        )

    async def act_intruder(self) -> None:
        """A well-formed update, then something else where its frame should be."""
        task, dtype, n = self._current()
        rng = self.rng
        conn = self.conn
        assert conn is not None
        update = update_for(task)
        changes, code, ref = rng.choice(BROKEN_UPDATES)
        intruders: list[tuple[str, Expect]] = [
            (
                json.dumps({"type": "checkin", "v": 1}),
                Expect("error", "unexpected_message", "checkin"),
            ),
            (to_text(update), Expect("error", "unexpected_message", "update")),
            (self._hello(), Expect("error", "unexpected_message", "hello")),
            (json.dumps(task), Expect("error", "unexpected_message", "task")),
            ('{"type": "update", "v": 1, ', Expect("error", "malformed", None)),
            (to_text(update_for(task, **changes)), Expect("error", code, ref)),
            (json.dumps({"type": "opt_out", "v": 1}), Expect("close", "1000 opted out")),
        ]
        weights = [3, 3, 2, 2, 2, 4, 1]
        text, expect = rng.choices(intruders, weights=weights)[0]
        self.tally[f"intruder {expect.code} {expect.ref_type}"] += 1
        await self._expect(expect, to_text(update), text)
        if expect.kind == "error" and rng.random() < 0.5:  # the frame, late: out of turn now
            payload = values("small", dtype, n, rng)
            late = frame_bytes(header_for(update, dtype, n), payload)
            await self._expect(Expect("error", "unexpected_message", None, "late frame"), late)

    async def act_bad_text(self) -> None:
        """An update that breaks its schema (then, often, its frame: out of turn)."""
        rng = self.rng
        task, _, _ = self._current()
        changes, code, ref = rng.choice(BROKEN_UPDATES)
        update = update_for(task, **changes)
        await self._expect(Expect("error", code, ref, f"update {changes}"[:80]), to_text(update))
        if rng.random() < 0.6:
            header = header_for(update_for(task), "float32", 11)
            late = frame_bytes(header, values("zeros", "float32", 11, rng))
            await self._expect(Expect("error", "unexpected_message", None, "orphan frame"), late)

    async def act_oversize(self) -> None:
        """A well-formed update padded past its own limit, or past the limit of any text."""
        task, _, _ = self._current()
        text = to_text(update_for(task))
        if self.rng.random() < 0.5:
            await self._expect(Expect("error", "too_large", "update"), text + " " * 20_000)
        else:
            await self._expect(Expect("error", "too_large", None), text + " " * 70_000)

    async def act_frame_alone(self) -> None:
        task, _, _ = self._current()
        frame = frame_bytes(header_for(update_for(task), "float32", 11), b"\0" * 44)
        await self._expect(Expect("error", "unexpected_message", None, "frame alone"), frame)

    async def act_second_hello(self) -> None:
        worker = self.worker_id if self.rng.random() < 0.5 else "deep-someone-else"
        expect = Expect("error", "unexpected_message", "hello", "second hello")
        await self._expect(expect, self._hello(worker_id=worker))

    async def act_checkin(self) -> None:
        rng = self.rng
        msg: dict[str, Any] = {"type": "checkin", "v": 1}
        roll = rng.random()
        if roll < 0.6:
            msg["tasks"] = [self.prefer]
        elif roll < 0.7:
            msg["tasks"] = list(TASKS)
        if rng.random() < 0.3:
            msg["eligibility"] = {k: rng.random() < 0.5 for k in ("idle", "charging", "unmetered")}
        if rng.random() < 0.2:
            msg["capabilities"] = {"update_dtypes": ["float16"], "max_model_bytes": 1}
        expect = Expect("assignment", what="checkin")
        if rng.random() < 0.05:
            msg["tasks"] = ["nosuch"]
            expect = Expect("assignment", "no_task", what="checkin for no task")
        await self._expect(expect, json.dumps(msg))
        conn = self.conn
        assert conn is not None
        await self.settle(conn)
        task = self.task
        if task is None or self._spent(task["nonce"]):
            await asyncio.sleep(rng.uniform(0.0, 0.03))  # come_back: retry soon, not in lockstep

    async def act_burst(self) -> None:
        """Several moves at once, without reading in between: answers queue up in order."""
        moves = [
            self.act_checkin_unread,
            lambda: self.act_update("valid"),
            lambda: self.act_update("non_finite"),
            self.act_bad_frame,
            self.act_bad_text,
            self.act_frame_alone,
            self.act_intruder,
        ]
        for move in self.rng.choices(moves, k=self.rng.randint(2, 5)):
            if self.conn is None or self.conn.closed is not None:
                break
            await move()

    async def act_checkin_unread(self) -> None:
        await self._expect(
            Expect("assignment", what="pipelined checkin"), '{"type":"checkin","v":1}'
        )

    async def act_opt_out(self) -> None:
        """opt_out, then more: nothing after it is read; the connection closes with 1000."""
        conn = self.conn
        assert conn is not None
        task, dtype, n = self._current()
        update = update_for(task)
        frame = frame_bytes(header_for(update, dtype, n), values("zeros", dtype, n, self.rng))
        conn.sync.append(Expect("close", "1000 opted out", what="opt_out"))
        await conn.send('{"type": "opt_out", "v": 1, "reason": "fuzz"}', to_text(update), frame)
        await conn.send('{"type": "checkin", "v": 1}', "garbage")

    async def act_reconnect(self) -> None:
        """Go away without a word (acks owed are lost) and come back: the same worker id gets
        its assignment back."""
        conn = self.conn
        assert conn is not None
        await self._leave(conn)

    async def act_takeover(self) -> None:
        """A newer connection of the same worker id: the older one is closed, 1008."""
        old = self.conn
        assert old is not None
        await self.settle(old)
        if old.closed is not None:
            return
        old.sync.append(Expect("close", "1008 already_connected", what="takeover"))
        new = await self._connect()
        if new is None:
            return
        self.conn = new
        new.sync.append(Expect("welcome", what="hello of a newer connection"))
        await new.send(self._hello())
        await self.settle(new)
        await self.settle(old)


# -- the honest round after it all ---------------------------------------------------------------


async def _assigned_to(client: RawClient, task: str) -> tuple[dict[str, Any], np.ndarray]:
    for _ in range(300):
        await client.send({"type": "checkin", "v": 1, "tasks": [task]})
        msg = await client.recv_json()
        if msg["type"] == "task":
            frame = await client.recv()
            assert isinstance(frame, bytes)
            (hlen,) = struct.unpack_from("<I", frame)
            return msg, np.frombuffer(frame[4 + hlen :], dtype="<f4").copy()
        await asyncio.sleep(0.02)
    raise AssertionError(f"no task of {task} was assigned")


async def _honest_round(server: Live, clients: Any) -> dict[str, Any]:
    """Two workers join after the fuzzing, report in one round, and the model committed is
    exactly the starting model plus the mean of their clipped updates."""
    name = "deep32"
    closed_before = sum(o.task == name for o in server.outcomes)

    async def one_more() -> None:  # the round open when fuzzing stopped is over; the next is clean
        while sum(o.task == name for o in server.outcomes) <= closed_before:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(one_more(), scaled(10.0))
    small = np.full(11, 0.1, dtype=np.float32)
    huge = np.full(11, 1e6 / math.sqrt(11), dtype=np.float32)
    for attempt in range(3):  # the two check-ins may straddle a round's close under load
        a, b = await clients(server.url), await clients(server.url)
        assert (await a.hello(f"honest-a-{attempt}"))["type"] == "welcome"
        assert (await b.hello(f"honest-b-{attempt}"))["type"] == "welcome"
        (ta, wa), (tb, wb) = await _assigned_to(a, name), await _assigned_to(b, name)
        if ta["round"] == tb["round"]:
            break
    assert ta["round"] == tb["round"], (ta, tb)
    np.testing.assert_array_equal(wa, wb)
    # The model handed out is the model last committed, whatever the fuzzing did to it.
    last = [o for o in server.outcomes if o.task == name][-1]
    np.testing.assert_array_equal(wa, last.params.astype(np.float32))
    await a.send(update_msg(ta))
    await a.send(update_frame(ta, small))
    await b.send(update_msg(tb))
    await b.send(update_frame(tb, huge))
    # Both are sent before either answer is read: an ack may wait for a checkpoint of two.
    answers = [await a.recv_json(timeout=10.0), await b.recv_json(timeout=10.0)]
    assert [m["type"] for m in answers] == ["ack", "ack"], answers

    async def closed() -> Any:
        while True:
            for o in server.outcomes:
                if o.task == name and o.round == ta["round"]:
                    return o
            await asyncio.sleep(0.02)

    outcome = await asyncio.wait_for(closed(), scaled(10.0))
    assert (outcome.status, outcome.reported) == ("completed", 2), outcome
    # Weights 10 and 10; the huge update is clipped by the server to norm 1.
    expected = (small + huge / np.linalg.norm(huge)) / 2
    np.testing.assert_allclose(outcome.params - wa, expected, rtol=1e-4, atol=1e-6)
    return {"round": outcome.round, "model_version": outcome.model_version}


# -- the test -------------------------------------------------------------------------------------


async def test_deep_fuzzing_reaches_the_aggregate_and_a_later_round_completes(
    live: LiveFactory,
    clients: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    stages = Stages(monkeypatch)
    server = await live(
        max_messages_per_s=1e6,  # the rate limit has its own test; here it would stop the depth
        max_errors=MAX_ERRORS,
        monitor_k=2,  # a checkpoint, and its acks, every two reports
        hello_timeout_s=10.0,
        pace_min_s=0.01,
        pace_max_s=0.05,
    )
    for name, dtype in TASKS.items():
        await server.coordinator.add_task(_task(name, dtype))
    fuzz = Fuzz(server.url, server.settings.max_errors)
    started = time.monotonic()
    sessions = [Session(fuzz, n) for n in range(SESSIONS)]
    await asyncio.wait_for(asyncio.gather(*(s.run() for s in sessions)), scaled(120.0))
    fuzz_s = time.monotonic() - started
    deep = Counter(stages.counts)  # before the honest workers add theirs
    honest = await _honest_round(server, clients)

    report = {
        "seed": SEED,
        "sessions": SESSIONS,
        "seconds": round(fuzz_s, 1),
        "inputs_sent": fuzz.tally["inputs sent"],
        "stages": {k: deep[k] for k in FLOORS},
        "coordinator": dict(sorted(deep.items())),
        "client": dict(sorted(fuzz.tally.items())),
        "violations": len(fuzz.violations),
        "honest_round": honest,
    }
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n")
    sent = report["inputs_sent"]
    print(
        f"\ndeep fuzz, {fuzz_s:.1f} s, seed {SEED}, {sent} inputs: {json.dumps(report['stages'])}"
    )

    assert fuzz.violations == [], "\n".join(fuzz.violations[:15])
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert logged == [], [(r.getMessage(), r.exc_text) for r in logged[:5]]
    assert fuzz.tally["closed 1011"] == 0 and fuzz.tally["error internal"] == 0
    shallow = {k: deep[k] for k, floor in FLOORS.items() if deep[k] < floor}
    assert shallow == {}, (shallow, FLOORS)
    # Every ack is for an update the sum took; every update the sum took was acknowledged,
    # unless the connection it came on was gone before its ack was due.
    acks = fuzz.tally["ack"]
    lost = fuzz.tally["updates owed on a connection that closed"]
    assert acks <= deep["aggregation"] <= acks + lost, (acks, deep["aggregation"], lost)
    # The kernel saw both sides of the clip, and refused what is not finite.
    assert deep["clipped by the server"] >= 20 and deep["clipping raised"] >= 20, deep


async def test_found_by_deep_fuzzing_a_metric_of_four_hundred_digits_is_malformed_not_a_crash(
    live: LiveFactory, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the deep fuzzer at e1c965b: an update valid by the schema of then, whose
    metric ``loss`` was an integer of 401 digits, made ``RoundState.add`` raise OverflowError
    (``float(loss)``) after the update had been added to the round's sum and marked reported:
    the worker got ``error internal`` and close 1011, and the aggregate held an update nobody
    acknowledged. The contract now bounds every metric (±10^9): the update is malformed,
    nothing is counted, and the same worker's next update counts."""
    caplog.set_level(logging.ERROR)
    server = await live()
    await server.coordinator.add_task(small_task(goal=1, min_reports=1, deadline_s=5.0))
    client = await joined(server, clients, "worker-huge-metric")
    task = await assigned(client)
    metrics = {"loss": Raw("1" + "0" * 400), "accuracy": 1}
    await client.send(to_text(update_for(task, metrics=metrics)))
    await client.send(update_frame(task, np.zeros(11)))
    error = await client.recv_json()
    assert (error["type"], error["code"], error.get("ref_type")) == ("error", "malformed", "update")
    assert "metrics.loss" in error["detail"] and error["fatal"] is False, error
    orphan = await client.recv_json()  # the frame, its update dropped, is out of turn
    assert (orphan["code"], orphan.get("ref_type")) == ("unexpected_message", None), orphan
    small = np.full(11, 0.1, dtype=np.float32)
    assert (await report(client, task, small))["type"] == "ack"
    await server.wait_rounds(1)
    outcome = server.outcomes[0]
    assert outcome.reported == 1, outcome
    assert all(math.isfinite(v) for v in outcome.metrics.values()), outcome.metrics
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged == [], [r.getMessage() for r in logged]
