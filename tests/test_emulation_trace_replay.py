"""Replaying a session trace in-process: the real coordinator and workers on virtual time, with
availability, bandwidth and speed from the trace. Every model frame and update frame the run
sends is recorded (device, direction, virtual time, bytes, seconds on the link) by the
behaviour model itself, so the tests see what the coordinator chose and when."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dandelion.emulation import EmulateOptions, PopulationConfig, RunResult, emulate
from dandelion.emulation.behaviour import Behaviour
from dandelion.emulation.inprocess import InProcessOptions, run_inprocess
from dandelion.emulation.localdata import TableSource
from dandelion.emulation.plan import EmulationPlan, make_plan
from dandelion.emulation.population import Dist, PopulationConfigError
from dandelion.emulation.tablebuild import Rows, build_table, write_table
from dandelion.emulation.trace import Session, Trace, load_trace
from dandelion.emulation.tracebehaviour import TraceBehaviour

ROWS = 40  # examples per device
FEATURES = 500  # wide enough that a model frame's bytes take a visible time on a slow link
EPOCHS = 2
# Nothing random in the devices but the trace: no dropouts, no stragglers, no jitter in
# start-up time, bandwidth and latency from the population file fixed.
STEADY = PopulationConfig(
    seed=3,
    rounds=3,
    dropout=0.0,
    straggler_share=0.0,
    availability="always",
    startup_s=Dist(1.0),
    down_mbps=Dist(20.0),
    up_mbps=Dist(5.0),
    latency_ms=Dist(60.0),
)


@dataclass(frozen=True)
class Frame:
    device: int
    upload: bool
    at: float
    nbytes: int
    seconds: float


class Recording(TraceBehaviour):
    """The trace's behaviour, noting every binary frame and every training it times."""

    def __init__(self, config: PopulationConfig, epoch: float, trace: Trace) -> None:
        super().__init__(config, epoch, trace)
        self.frames: list[Frame] = []
        self.trainings: list[tuple[int, float, float]] = []  # device, at, seconds

    def transfer_s(self, device: int, nbytes: int, *, upload: bool) -> float:
        seconds = super().transfer_s(device, nbytes, upload=upload)
        at = asyncio.get_running_loop().time()
        self.frames.append(Frame(device, upload, at, nbytes, seconds))
        return seconds

    def train_s(self, device: int, round_: int, examples: int, epochs: int) -> float:
        seconds = super().train_s(device, round_, examples, epochs)
        self.trainings.append((device, asyncio.get_running_loop().time(), seconds))
        return seconds

    def models(self, device: int) -> list[Frame]:
        return [f for f in self.frames if f.device == device and not f.upload]

    def updates(self, device: int) -> list[Frame]:
        return [f for f in self.frames if f.device == device and f.upload]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> TableSource:
    rng = np.random.default_rng(0)
    devices = 8
    x = rng.normal(size=(devices * ROWS, FEATURES))
    y = (x[:, 0] > 0).astype(int)
    tx = rng.normal(size=(50, FEATURES))
    arrays = build_table(
        Rows(x, np.repeat(np.arange(devices), ROWS).tolist(), labels=y.tolist()),
        test=Rows(tx, None, labels=(tx[:, 0] > 0).astype(int).tolist()),
    )
    path = tmp_path_factory.mktemp("trace") / "table.npz"
    write_table(path, arrays)
    return TableSource(path)


def task(goal: int, rounds: int) -> dict[str, Any]:
    return {
        "name": "traced",
        "objective": "page_examples",
        "features": {"num_classes": 2},
        "model": {"kind": "logreg", "num_features": FEATURES},
        "hyper": {"learning_rate": 0.3, "epochs": EPOCHS, "batch_size": 16, "clip_norm": 10.0},
        "rounds": {"goal": goal, "min_reports": goal, "deadline_s": 600.0, "max_rounds": rounds},
    }


def replay(
    table: TableSource, sessions: list[Session], size: int, goal: int, rounds: int
) -> tuple[RunResult, Recording]:
    config = STEADY.replace(size=size, rounds=rounds)
    trace = Trace(sessions)
    plan = make_plan(config, task=task(goal, rounds), source=table, trace=trace)
    recording = Recording(plan.config, plan.epoch, trace)

    class Recorded(EmulationPlan):
        def behaviour(self) -> Behaviour:
            return recording

    recorded = Recorded(plan.config, plan.task, plan.source, plan.epoch, plan.trace)
    return run_inprocess(recorded, InProcessOptions(progress=False)), recording


def test_a_device_offline_in_the_trace_is_never_selected_while_offline(
    table: TableSource,
) -> None:
    day = 86400.0
    away_from, away_to = 60.0, 200.0  # rounds take about 10 s here
    sessions = [Session(d, 0.0, day) for d in range(4)]
    sessions += [Session(4, 0.0, away_from), Session(4, away_to, day)]
    sessions += [Session(5, 2 * day, 3 * day)]  # online only after the run
    result, recording = replay(table, sessions, size=7, goal=3, rounds=40)  # 6: no session
    assert result.summary()["rounds"] == 40
    trace = recording.trace
    # Every model the coordinator sent went to a device online in the trace at that moment.
    assert recording.frames
    for frame in recording.frames:
        assert trace.next_online(frame.device, frame.at) == frame.at, frame
    # Rounds went on while device 4 was away, and it had its share before and after.
    during = [r for r in result.completed if away_from < r.virtual_s < away_to]
    assert len(during) >= 5
    device4 = [f.at for f in recording.models(4)]
    assert any(t < away_from for t in device4) and any(t >= away_to for t in device4)
    assert not any(away_from <= t < away_to for t in device4)
    assert recording.models(5) == [] and recording.models(6) == []


def _first_update(table: TableSource, session: Session) -> tuple[Frame, Frame, Recording]:
    result, recording = replay(table, [session], size=1, goal=1, rounds=1)
    assert result.summary()["rounds"] == 1
    (model,) = recording.models(0)
    update = recording.updates(0)[0]
    return model, update, recording


def test_lower_bandwidth_lengthens_the_download_in_virtual_time(table: TableSource) -> None:
    fast_model, fast_update, _ = _first_update(table, Session(0, 0.0, 3600.0, down_mbps=100.0))
    slow_model, slow_update, _ = _first_update(table, Session(0, 0.0, 3600.0, down_mbps=0.005))
    bits = slow_model.nbytes * 8
    assert bits > FEATURES * 32  # the model's float32 parameters
    assert slow_model.seconds == pytest.approx(bits / 0.005e6 + 0.06, rel=1e-9)  # + 60 ms latency
    assert fast_model.seconds == pytest.approx(bits / 100e6 + 0.06, rel=1e-9)
    # The device reports later by exactly the extra time its model spent on the link.
    extra = slow_model.seconds - fast_model.seconds
    assert extra > 1.0
    assert slow_update.at - fast_update.at == pytest.approx(extra, abs=1e-6)
    assert slow_model.at == pytest.approx(fast_model.at, abs=1e-6)  # sent at the same moment


def test_the_sessions_speed_sets_the_training_time(table: TableSource) -> None:
    _, quick_update, quick = _first_update(
        table, Session(0, 0.0, 3600.0, examples_per_s=1e6, up_mbps=10.0)
    )
    _, slow_update, slow = _first_update(
        table, Session(0, 0.0, 3600.0, examples_per_s=4.0, up_mbps=10.0)
    )
    (q,), (s,) = quick.trainings, slow.trainings
    assert q[2] == pytest.approx(ROWS * EPOCHS / 1e6)
    assert s[2] == pytest.approx(ROWS * EPOCHS / 4.0)  # 20 s
    assert slow_update.at - quick_update.at == pytest.approx(s[2] - q[2], abs=1e-6)


def test_a_device_whose_session_ends_while_training_does_not_report(table: TableSource) -> None:
    # Training takes 80 s at 1 example per second; the first session ends 30 s in. The second
    # session, long enough, brings the device back and the round completes then.
    sessions = [Session(0, 0.0, 30.0, examples_per_s=1.0), Session(0, 600.0, 7200.0)]
    result, recording = replay(table, sessions, size=1, goal=1, rounds=1)
    assert result.counters["went_offline_training"] == 1
    assert result.summary()["rounds"] == 1
    reports = recording.updates(0)
    # The round's one report comes from the second session, not the first (the device may
    # already be at work on the next round when the run ends after its last).
    assert reports and reports[0].at >= 600.0


def test_link_and_speed_come_from_the_session_in_force(table: TableSource) -> None:
    config = STEADY.replace(size=2)
    trace = Trace(
        [
            Session(0, 0.0, 100.0, down_mbps=1.0, latency_ms=5.0, examples_per_s=10.0),
            Session(0, 100.0, 200.0, up_mbps=2.0),
        ]
    )
    own = Behaviour(config, 0.0)
    traced = TraceBehaviour(config, 0.0, trace)
    assert traced.link_at(0, 50.0, upload=False) == (1.0, 0.005)
    # The second session gives no download figure: the population file's draw stays.
    assert traced.link_at(0, 150.0, upload=False) == own.link(0, upload=False)
    assert traced.link_at(0, 150.0, upload=True) == (2.0, own.link(0, upload=True)[1])
    assert traced.speed_at(0, 50.0) == 10.0 and traced.speed_at(0, 150.0) == own.speed(0)
    assert traced.next_online(0, 150.0) == 150.0 and traced.online_until(0, 50.0) == 200.0
    assert traced.next_online(0, 200.0) == math.inf and traced.next_online(1, 0.0) == math.inf


def test_the_shipped_trace_runs_and_is_recorded_by_its_hash(table: TableSource) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "trace.csv"
    trace = load_trace(example)
    result = emulate(
        STEADY.replace(size=trace.devices, rounds=3),
        EmulateOptions(progress=False),
        trace=trace,
    )
    assert result.summary()["rounds"] == 3
    assert result.info is not None
    assert result.info.options["trace"] == {
        "sha256": trace.sha256,
        "bytes": example.stat().st_size,
        "sessions": 1180,
    }


def test_what_a_trace_cannot_do_is_refused(table: TableSource) -> None:
    trace = Trace([Session(9, 0.0, 10.0)])
    with pytest.raises(PopulationConfigError, match="the trace names device 9"):
        make_plan(STEADY.replace(size=8), task=task(1, 1), source=table, trace=trace)
    with pytest.raises(PopulationConfigError, match="trace: replayed in-process only"):
        emulate(STEADY.replace(size=10), EmulateOptions(mode="websocket"), trace=trace)
