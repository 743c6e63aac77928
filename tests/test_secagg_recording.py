"""Nothing unmasked of one worker reaches the coordinator of a secure round: everything it
received (every WebSocket message, recorded as the conversation driver takes it in), everything
it logged (every record at DEBUG) and everything it stored (every row of every table of its
SQLite file) is compared with each worker's plaintext clipped update, recorded on the worker's
side. None equals one, and no vector in it correlates with one (|r|, Pearson's and rank, small at
d = 401, where a leaked update gives r = 1: checked as a control)."""

from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np
import pytest
from scipy.stats import rankdata

from dandelion.protocol import decode_frame
from dandelion.protocol.secagg import encode
from dandelion.transport.driver import Conversation

from .conftest import Live, LiveFactory
from .secagg_live import LEAVE_AT, Fleet, expected_step, secure_config

FEATURES = 400
R_MAX = 0.25  # |r| of independent vectors at d = 401 is about N(0, 0.05): 5 sigma


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def _views(data: bytes, d: int) -> list[tuple[str, np.ndarray]]:
    """A byte string read every way a vector of d values could hide in it: as float32 (then
    only its ranks are compared: random bits read as float32 hold a few huge values, which
    alone would decide Pearson's r), uint32 and int32."""
    if len(data) < 4 * d or len(data) % 4:
        return []
    out = []
    for start in range(0, len(data) - 4 * d + 1, 4):
        if start and start != len(data) - 4 * d:
            continue  # at its start or at its end (after a header)
        chunk = data[start : start + 4 * d]
        # Random bits read as float32 hold NaNs and infinities: those count as zeros.
        floats = np.frombuffer(chunk, dtype="<f4")
        out.append(("f4", np.where(np.isfinite(floats), floats, 0).astype(np.float64)))
        out.append(("u4", np.frombuffer(chunk, dtype="<u4").astype(np.float64)))
        out.append(("i4", np.frombuffer(chunk, dtype="<i4").astype(np.float64)))
    return out


def _digits(values: list[float]) -> set[str]:
    """The update's values as a log line or a JSON number would print them."""
    out = set()
    for v in values:
        if abs(v) > 1e-3:
            out.add(f"{v:.6g}")
            out.add(repr(v)[:10])
    return out


async def test_the_coordinator_receives_logs_and_stores_nothing_of_one_update(
    live: LiveFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[str | bytes] = []
    original = Conversation.receive

    async def recording(self: Conversation, data: str | bytes) -> None:
        received.append(data)
        await original(self, data)

    monkeypatch.setattr(Conversation, "receive", recording)
    caplog.set_level(logging.DEBUG)
    server: Live = await live()
    n = 16
    config = secure_config(n, min_reports=8, num_features=FEATURES)
    await server.coordinator.add_task(config)
    fleet = Fleet(server.url)
    leaving = {"worker-gone-keys": "share", "worker-gone-unmask": "unmask"}
    workers = [fleet.add(f"worker-{i:02d}", seed=i, features=FEATURES) for i in range(n - 2)]
    workers += [
        fleet.add(w, seed=50 + j, leave_at=LEAVE_AT[p], features=FEATURES)
        for j, (w, p) in enumerate(leaving.items())
    ]
    await fleet.run(workers)
    await server.wait_rounds(1)
    d = config.model.param_count
    plain = {w: v for (w, _), v in fleet.updates.items()}  # as the workers computed them
    updates = {w: np.asarray(v, dtype=np.float32) for w, v in plain.items()}
    assert len(updates) == n - 1  # the one that left at the keys never trained
    plan = config.secure_aggregation
    assert plan is not None
    bits = plan.params(n, d, config.clip_norm).scale_bits
    encoded = {
        w: np.frombuffer(encode(plain[w], 1.0, bits), dtype="<u4") for w, u in updates.items()
    }
    spread = {w: float(np.abs(u).max()) for w, u in updates.items()}
    assert min(spread.values()) > 0  # every update is a real vector, not zeros

    # The control: a leaked update, in any of these forms, would be caught.
    some = next(iter(updates))
    leaked = _views(encoded[some].tobytes(), d)
    assert max(abs(_pearson(v, updates[some])) for _, v in leaked) > 0.99
    assert max(abs(_spearman(v, updates[some])) for _, v in leaked) > 0.9

    def check_vectors(data: bytes, where: str) -> int:
        views = _views(data, d)
        for w, u in updates.items():
            assert data != u.tobytes() and data != encoded[w].tobytes(), (where, w)
            for kind, v in views:
                assert abs(_spearman(v, u)) < R_MAX, (where, w, kind, _spearman(v, u))
                if kind != "f4":
                    assert abs(_pearson(v, u)) < R_MAX, (where, w, kind, _pearson(v, u))
        return len(views)

    def check_text(text: str, where: str) -> None:
        for w in updates:
            for shown in _digits(plain[w]):
                assert shown not in text, (where, w, shown)

    # Received: control messages of the protocol and masked frames, nothing else.
    frames = [m for m in received if isinstance(m, bytes)]
    texts = [m for m in received if isinstance(m, str)]
    types = {json.loads(t)["type"] for t in texts}
    assert types <= {
        "hello",
        "checkin",
        *(f"secagg_{p}" for p in ("advertise", "shares", "masked", "reveal")),
    }, types
    assert {decode_frame(f).header.type for f in frames} == {"masked"}
    assert len(frames) == n - 1  # the one that left at the keys sent none
    checked = sum(check_vectors(decode_frame(f).payload.tobytes(), "frame") for f in frames)
    assert checked >= 3 * len(frames)
    for t in texts:
        check_text(t, "text message")

    # Logged.
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    assert "secure round 1" in log_text  # the coordinator did log the round (counts)
    check_text(log_text, "log")

    # Stored: every row of every table; the model versions hold the released model only.
    db = sqlite3.connect(server.settings.db)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert "model_versions" in tables
    survivors = list(updates)  # everyone who trained sent its masked vector: all in the sum
    before = np.frombuffer(
        db.execute("SELECT params FROM model_versions WHERE version = 0").fetchone()[0], "<f4"
    )
    after = db.execute("SELECT params FROM model_versions WHERE version = 1").fetchone()[0]
    expected = expected_step([plain[w] for w in survivors], 1.0, bits, before)
    assert np.array_equal(np.frombuffer(after, "<f4"), expected)  # the sum, released
    rows = 0
    for table in tables:
        cursor = db.execute(f'SELECT * FROM "{table}"')  # names from sqlite_master
        columns = [c[0] for c in cursor.description]
        for row in cursor:
            rows += 1
            for column, value in zip(columns, row, strict=True):
                where = f"{table}.{column}"
                if table == "model_versions" and column == "params":
                    continue  # the released model, checked above
                if isinstance(value, bytes):
                    check_vectors(value, where)
                elif isinstance(value, str):
                    check_text(value, where)
    assert rows > n  # events, rounds, tasks, models: the check read real rows
    db.close()
