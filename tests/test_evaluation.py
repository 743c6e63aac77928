"""Federated evaluation: rounds in which workers score the latest model on examples they held
out of training and send back only sums — released with at least k reports, noised and charged
to the ledger under [privacy], resumed after a restart, shown by the admin API.

A real coordinator in process: over real WebSockets (the ``live`` fixture, the browser worker's
own ``Worker`` or hand-driven clients), or through its handlers with a clock the test moves."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from browser_worker.holdout import held_out, split
from browser_worker.training import evaluate_sums
from dandelion.coordinator import Coordinator, EvalRound, TaskConfig, TaskConfigError
from dandelion.privacy import PrivacyConfig, PrivacyLedger, RoundEvent, evaluation_event
from dandelion.privacy.accountant import epsilon as accountant_epsilon
from dandelion.protocol import Checkin, EvalReport, Hello, Task
from dandelion.settings import load_settings
from dandelion.storage import AsyncStore, EvaluationRecord, SQLiteStore
from dandelion.taskspec import (
    Model,
    Objective,
    Signals,
    VisitRecord,
    objective,
    register_model,
    register_objective,
)
from dandelion.taskspec.models import Example, ModelSpec

from .conftest import Live, LiveFactory, RawClient, scaled
from .dp_helpers import Clock, frame_of
from .test_admin_api import _http, _token
from .test_coordinator_live import assigned, joined, report_together, update_frame

ROOT = Path(__file__).resolve().parent.parent
SPEC = ModelSpec("logreg", 10)


def eval_task(
    *,
    rounds: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    privacy: dict[str, Any] | None = None,
) -> TaskConfig:
    """A tiny logistic regression task (11 parameters) with an [evaluation] table."""
    raw: dict[str, Any] = {
        "name": "t1",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": 10},
        "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 4, "clip_norm": 1.0},
        "rounds": {"goal": 3, "over_selection": 1.0, "min_reports": 3, "deadline_s": 10.0}
        | (rounds or {}),
        "evaluation": {"every": 1} | (evaluation or {}),
    }
    if privacy is not None:
        raw["server"] = {"weighting": "uniform"}
        raw["privacy"] = privacy
    return TaskConfig.from_dict(raw)


def local_data(seed: int, n: int = 40) -> list[Example]:
    """``n`` distinct sparse examples over 10 features."""
    rng = random.Random(seed)
    return [
        Example(
            tuple(sorted(rng.sample(range(10), 3))),
            tuple(round(rng.uniform(-1.0, 1.0), 3) for _ in range(3)),
            rng.randrange(2),
        )
        for _ in range(n)
    ]


async def _until(condition: Any, timeout: float = 20.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), scaled(timeout))


def _params(store: Any, version: int) -> list[float]:
    stored = store.get_model_version("t1", version)
    assert stored is not None
    return np.frombuffer(stored.params, dtype="<f4").astype(float).tolist()  # type: ignore[no-any-return]


# -- the whole path: browser workers, training and evaluation rounds ---------------------------


async def test_workers_train_and_evaluate_and_the_release_is_their_held_out_sums(
    live: LiveFactory,
) -> None:
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig, train_pure

    server: Live = await live(monitor_k=3)
    config = eval_task(rounds={"max_rounds": 2}, evaluation={"holdout": 0.25})
    await server.coordinator.add_task(config)
    ids = [f"worker-{i:04d}" for i in range(3)]
    data = {w: local_data(i) for i, w in enumerate(ids)}
    trained_on: dict[str, list[Example]] = {w: [] for w in ids}

    def trainer(worker: str) -> Any:
        async def train(spec: Any, frame: Any, examples: Any, hyper: Any, rng: Any) -> Any:
            trained_on[worker].extend(examples)
            return await train_pure(spec, frame, examples, hyper, rng)

        return train

    workers = [
        Worker(
            CPythonHost(),
            WorkerConfig(server.url, worker_id=w),
            lambda *_, d=data[w]: d,  # type: ignore[misc]
            trainer=trainer(w),
        )
        for w in ids
    ]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        await _until(lambda: sum(o.kind == "evaluate" for o in server.outcomes) == 2, 30)
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait(runs, timeout=scaled(10))

    # Training, evaluation, training, evaluation: the last model is scored too, and evaluation
    # rounds neither change the model nor count towards max_rounds.
    kinds = [(o.round, o.kind, o.status) for o in server.outcomes]
    assert kinds == [
        (1, "train", "completed"),
        (2, "evaluate", "completed"),
        (3, "train", "completed"),
        (4, "evaluate", "completed"),
    ]
    runtime = server.coordinator.tasks["t1"]
    assert (runtime.model_version, runtime.completed_rounds, runtime.round) == (2, 2, None)
    assert not runtime.wants_round  # finished: nothing more opens

    def read(s: Any) -> Any:
        return (
            s.list_evaluations("t1"),
            {v: _params(s, v) for v in (1, 2)},
            [(r.round, r.kind) for r in s.list_rounds("t1")],
            len(s.list_model_versions("t1")),
        )

    evaluations, params, rounds, versions = await server.store.read(read)
    assert rounds == [(4, "evaluate"), (3, "train"), (2, "evaluate"), (1, "train")]
    assert versions == 3  # the initial model and one per training round, none per evaluation
    assert [(e.round, e.model_version, e.reports, e.withheld) for e in evaluations] == [
        (4, 2, 3, False),
        (2, 1, 3, False),
    ]
    held = {w: split(w, "t1", data[w], 0.25)[1] for w in ids}
    for record in evaluations:
        # What each worker computed on its own held-out examples, summed: the release.
        sums = [evaluate_sums(SPEC, params[record.model_version], held[w], 10.0) for w in ids]
        assert record.count == sum(s.count for s in sums)
        assert record.correct == sum(s.correct for s in sums)
        assert record.loss_sum == pytest.approx(sum(s.loss_sum for s in sums), rel=1e-12)
        assert record.loss == pytest.approx(record.loss_sum / record.count)  # type: ignore[operator]
        assert record.accuracy == pytest.approx(record.correct / record.count)  # type: ignore[operator]
        assert record.noise_multiplier is None
    for w in ids:
        # Training never saw a held-out example, and saw every other one (once per round).
        assert held[w], w
        assert not set(trained_on[w]) & set(held[w])
        assert set(trained_on[w]) == set(data[w]) - set(held[w])
        assert len(trained_on[w]) == 2 * (len(data[w]) - len(held[w]))
    statuses = [w.status.extra.get("evaluations_accepted") for w in workers]
    assert statuses == [2, 2, 2]


def test_the_holdout_is_a_stable_function_of_worker_task_and_example() -> None:
    examples = local_data(7, n=2000)
    train, held = split("worker-a", "t1", examples, 0.2)
    assert (list(train), held) == (list(split("worker-a", "t1", examples, 0.2)[0]), held)
    assert 0.17 < len(held) / len(examples) < 0.23
    assert set(held).isdisjoint(train) and set(held) | set(train) == set(examples)
    # No list position in it: dropping the oldest examples or reordering moves none across.
    shifted = list(reversed(examples[500:]))
    assert set(split("worker-a", "t1", shifted, 0.2)[1]) == set(held) & set(shifted)
    # Another worker or another task holds out other examples; no fraction holds out none.
    assert set(split("worker-b", "t1", examples, 0.2)[1]) != set(held)
    assert set(split("worker-a", "t2", examples, 0.2)[1]) != set(held)
    assert split("worker-a", "t1", examples, None) == (examples, [])
    # A larger fraction holds out a superset: the hash decides, the fraction only cuts.
    assert all(held_out("worker-a", "t1", e, 0.5) for e in held)


# -- k, bounds, malformed reports, the wrong kind --------------------------------------------


def _eval_msg(task: dict[str, Any], **metrics: Any) -> dict[str, Any]:
    return {
        "type": "eval_report",
        "v": 1,
        "task": task["task"],
        "round": task["round"],
        "nonce": task["nonce"],
        "metrics": metrics,
    }


async def _send_eval(client: RawClient, task: dict[str, Any], **metrics: Any) -> dict[str, Any]:
    await client.send(_eval_msg(task, **metrics))
    return await client.recv_json()


async def _train_one_round(server: Live, clients: Any, n: int = 3) -> list[RawClient]:
    joined_ = [await joined(server, clients, f"worker-{i:04d}") for i in range(n)]
    tasks = [await assigned(c) for c in joined_]
    assert {t.get("kind", "train") for t in tasks} == {"train"}
    answers = await report_together(zip(joined_, tasks, strict=True))
    assert [a["type"] for a in answers] == ["ack"] * n
    return joined_


async def test_below_k_an_evaluation_is_withheld_and_shows_nothing(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live()  # monitor_k = 10: three reports are below it
    await server.coordinator.add_task(eval_task(rounds={"max_rounds": 1}))
    workers = await _train_one_round(server, clients)
    tasks = [await assigned(c) for c in workers]
    assert {(t["kind"], t["round"], t["model_version"]) for t in tasks} == {("evaluate", 2, 1)}
    assert tasks[0]["evaluation"] == {"holdout": 0.2, "max_examples": 100, "max_loss": 10.0}
    answers = await asyncio.gather(
        *(
            _send_eval(c, t, count=20, loss_sum=9.0, correct=15)
            for c, t in zip(workers, tasks, strict=True)
        )
    )
    assert [a["type"] for a in answers] == ["ack"] * 3  # counted, not released
    await _until(lambda: any(o.kind == "evaluate" for o in server.outcomes))
    (record,) = await server.store.read(lambda s: s.list_evaluations("t1"))
    assert (record.reports, record.withheld) == (3, True)
    assert (record.count, record.loss_sum, record.correct, record.loss) == (None,) * 4
    token = await _token(server)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{_http(server)}/api/v1/tasks/t1/evaluations") as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(f"{_http(server)}/api/v1/tasks/t1") as resp:
            detail = await resp.json()
    (shown,) = body["evaluations"]
    assert shown["withheld"] and shown["reports"] is None and shown["withheld_below"] == 10
    assert all(shown[f] is None for f in ("count", "loss_sum", "correct", "loss", "accuracy"))
    assert detail["evaluations"] == body["evaluations"]
    kinds = {r["round"]: (r["kind"], r["metrics"]) for r in detail["recent_rounds"]}
    assert kinds == {1: ("train", {}), 2: ("evaluate", {})}


async def test_reports_are_bounded_and_released_at_k(live: LiveFactory, clients: Any) -> None:
    server: Live = await live(monitor_k=3)
    await server.coordinator.add_task(
        eval_task(rounds={"max_rounds": 1}, evaluation={"max_examples": 50, "max_loss": 2.0})
    )
    workers = await _train_one_round(server, clients)
    tasks = [await assigned(c) for c in workers]
    sent = [
        {"count": 200, "loss_sum": 100.0, "correct": 180},  # too many: scaled to 50 examples
        {"count": 10, "loss_sum": 50.0, "correct": 4},  # mean loss 5 > 2: bounded to 20
        {"count": 10, "loss_sum": 5.0, "correct": 7},  # within the bounds: as sent
    ]
    answers = await asyncio.gather(
        *(_send_eval(c, t, **m) for c, t, m in zip(workers, tasks, sent, strict=True))
    )
    assert [a["type"] for a in answers] == ["ack"] * 3
    await _until(lambda: any(o.kind == "evaluate" for o in server.outcomes))
    (record,) = await server.store.read(lambda s: s.list_evaluations("t1"))
    assert not record.withheld
    assert record.count == 50 + 10 + 10
    assert record.loss_sum == pytest.approx(25.0 + 20.0 + 5.0)
    assert record.correct == pytest.approx(45.0 + 4 + 7)
    assert record.accuracy == pytest.approx(56 / 70)
    token = await _token(server)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{_http(server)}/api/v1/tasks/t1/evaluations") as resp,
    ):
        (shown,) = (await resp.json())["evaluations"]
    assert (shown["reports"], shown["count"], shown["withheld"]) == (3, 70, False)
    assert shown["loss"] == pytest.approx(50 / 70)


async def test_a_malformed_or_misdirected_eval_report_is_refused_and_all_carry_on(
    live: LiveFactory, clients: Any
) -> None:
    server: Live = await live(monitor_k=2, max_errors=100)
    await server.coordinator.add_task(eval_task(rounds={"goal": 1, "min_reports": 1}))
    (worker,) = await _train_one_round(server, clients, n=1)
    task = await assigned(worker)
    assert task["kind"] == "evaluate"
    # An update to an evaluation round is not assigned; so would be the other way round.
    await worker.send(
        {
            "type": "update",
            "v": 1,
            "task": "t1",
            "round": task["round"],
            "nonce": task["nonce"],
            "num_examples": 1,
            "metrics": {},
            "unclipped": True,
        }
    )
    await worker.send(update_frame(task, np.zeros(11)))
    misdirected = await worker.recv_json()
    assert (misdirected["type"], misdirected["reason"]) == ("reject", "not_assigned")
    assert "eval_report" in misdirected["detail"]
    # The schema examples that break one rule each, then more: all malformed, none fatal.
    corpus = sorted((ROOT / "schemas/examples/invalid").glob("eval_report.*.json"))
    assert len(corpus) >= 5
    texts = (
        [p.read_text() for p in corpus]
        + [
            json.dumps(_eval_msg(task, count=10.0, loss_sum=1.0, correct=1)),  # 10.0 is no integer
            json.dumps(_eval_msg(task, count=1, loss_sum=1.0, correct=1))[:-2],  # not JSON
            json.dumps(_eval_msg(task, count=1, loss_sum=1, correct=1)).replace("1}", "NaN}"),
            json.dumps({**_eval_msg(task, count=1, loss_sum=1.0, correct=1), "metrics": [1, 2]}),
        ]
    )
    assert len(texts) >= 10
    for text in texts:
        await worker.send(text)
        error = await worker.recv_json()
        assert (error["type"], error["code"], error["fatal"]) == ("error", "malformed", False)
    # Nothing of that counted; the real report does, once, and a second one is a duplicate.
    ok = await _send_eval(worker, task, count=4, loss_sum=2.0, correct=3)
    assert ok["type"] == "ack", ok
    again = await _send_eval(worker, task, count=4, loss_sum=2.0, correct=3)
    assert (again["type"], again["reason"]) in {("reject", "duplicate"), ("reject", "stale_round")}
    await _until(lambda: any(o.kind == "evaluate" for o in server.outcomes))
    (record,) = await server.store.read(lambda s: s.list_evaluations("t1"))
    assert (record.reports, record.withheld) == (1, True)  # one report: below k = 2
    # The coordinator goes on: the next training round opens and is assigned.
    nxt = await assigned(worker)
    assert (nxt.get("kind", "train"), nxt["round"]) == ("train", 3)


# -- every objective and model: regression, plugins ------------------------------------------


@register_objective("eval_test_visit_gap")
class VisitGap(Objective):
    """A plugin regression objective: each visit's example is its hour of day and title length,
    its target the fraction of the week it happened at (deterministic in the visits)."""

    task = "regression"
    default_model = "linreg"

    def num_features(self, features: Any) -> int:
        return 2

    def outputs(self, features: Any) -> list[str]:
        return ["week_fraction"]

    def examples(self, signals: Signals, features: Any, now: float) -> list[Example]:
        return [
            Example(
                (0, 1),
                ((v.visit_time % 86_400) / 86_400, len(v.title) / 10),
                target=(v.visit_time % 604_800) / 604_800,
            )
            for v in signals.visits
        ]


@register_model("eval_test_quarter_loss")
class QuarterLoss(Model):
    """A plugin classifier whose loss is a flat 0.25 per example, whatever it predicts: what an
    evaluation must report is the model's own loss, not a log-loss of its scores."""

    def param_count(self, spec: ModelSpec) -> int:
        return 1

    def loss_grad(self, spec: ModelSpec, params: Any, batch: Any, grad: dict[int, float]) -> float:
        return 0.25 * len(batch)

    def predict(self, spec: ModelSpec, params: Any, ex: Example) -> list[float]:
        return [0.3, 0.7]  # class 1, always


def test_scoring_uses_the_models_own_loss_and_a_regression_has_no_accuracy() -> None:
    linreg = ModelSpec("linreg", 2, num_classes=1)
    examples = [Example((0, 1), (1.0, 0.5), target=t) for t in (0.0, 1.0, 4.0)]
    params = [1.0, 0.0, 0.0]  # predicts 1.0 for every example
    sums = evaluate_sums(linreg, params, examples)
    assert (sums.count, sums.correct) == (3, 0)
    assert sums.loss_sum == pytest.approx(0.5 * (1.0 + 0.0 + 9.0))  # half squared errors
    clipped = evaluate_sums(linreg, params, examples, max_loss=2.0)
    assert clipped.loss_sum == pytest.approx(0.5 + 0.0 + 2.0)
    plugin = ModelSpec("eval_test_quarter_loss", 3)
    labelled = [Example((0,), (1.0,), label=y) for y in (0, 1, 1, 0, 1)]
    sums = evaluate_sums(plugin, [0.0], labelled)
    assert (sums.count, sums.loss_sum, sums.correct) == (5, 1.25, 3)


def test_the_holdout_tells_examples_apart_by_their_regression_target() -> None:
    same_features = [Example((0, 1), (0.5, 0.5), target=t / 10) for t in range(200)]
    held = split("worker-a", "t1", same_features, 0.5)[1]
    assert 0 < len(held) < len(same_features)


def _visits(seed: int, n: int = 40) -> Signals:
    rng = random.Random(seed)
    start = 1_700_000_000.0
    return Signals(
        visits=tuple(
            VisitRecord(f"https://example.org/{i}", "x" * rng.randrange(1, 10), start + i * 3_917)
            for i in range(n)
        )
    )


async def test_a_plugin_regression_objective_is_evaluated_on_its_own_examples(
    live: LiveFactory,
) -> None:
    """Workers whose examples come from a plugin objective through the task-spec registry (as
    the browser's do), a regression on linreg: held-out losses are released, no accuracy."""
    from browser_worker.host.cpython import CPythonHost
    from browser_worker.worker import Worker, WorkerConfig

    server: Live = await live(monitor_k=3)
    raw = {
        **eval_task(rounds={"max_rounds": 1}, evaluation={"holdout": 0.3}).to_dict(),
        "objective": "eval_test_visit_gap",
        "features": {},
        "model": {"kind": "linreg"},
    }
    config = TaskConfig.from_dict(raw)
    assert (config.model.kind, config.model.num_features) == ("linreg", 2)
    await server.coordinator.add_task(config)
    ids = [f"worker-{i:04d}" for i in range(3)]
    signals = {w: _visits(i) for i, w in enumerate(ids)}

    def provider(worker: str) -> Any:
        def data(name: str, features: dict[str, Any], now: float) -> list[Example]:
            plugin = objective(name)  # what the browser's provider does
            return list(plugin.examples(signals[worker], plugin.configure(features), now))

        return data

    workers = [
        Worker(CPythonHost(), WorkerConfig(server.url, worker_id=w), provider(w)) for w in ids
    ]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        await _until(lambda: any(o.kind == "evaluate" for o in server.outcomes), 30)
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait(runs, timeout=scaled(10))
    (record,) = await server.store.read(lambda s: s.list_evaluations("t1"))
    assert (record.reports, record.withheld, record.model_version) == (3, False, 1)
    assert record.correct is None and record.accuracy is None
    params = await server.store.read(lambda s: _params(s, 1))
    spec = ModelSpec("linreg", 2, num_classes=1)
    plugin = objective("eval_test_visit_gap")
    expected = 0.0
    count = 0
    for w in ids:
        held = split(w, "t1", plugin.examples(signals[w], {}, 0.0), 0.3)[1]
        sums = evaluate_sums(spec, params, held[:100], 10.0)
        expected += sums.loss_sum
        count += sums.count
    assert record.count == count
    assert record.loss_sum == pytest.approx(expected, rel=1e-12)
    evaluate_round = next(o for o in server.outcomes if o.kind == "evaluate")
    assert set(evaluate_round.metrics) == {"loss"}


# -- privacy: noised sums, charged to the ledger ---------------------------------------------


async def test_under_privacy_the_sums_are_noised_and_the_ledger_charges_them(
    live: LiveFactory, clients: Any
) -> None:
    import dp_accounting
    from dp_accounting import pld

    server: Live = await live(monitor_k=3)
    privacy = {"population": 3, "noise_multiplier": 1.0, "epsilon": 1000.0}  # q = 1
    config = eval_task(
        rounds={"max_rounds": 1, "deadline_s": 1.0},
        evaluation={"noise_multiplier": 2.0, "max_examples": 20, "deadline_s": 30.0},
        privacy=privacy,
    )
    await server.coordinator.add_task(config)
    workers = await _train_one_round(server, clients)  # a Poisson round: closes at its deadline
    # Check in once the evaluation round is open (polling for it all through the training
    # round's deadline would run into the connection's message rate limit).
    await _until(lambda: getattr(server.coordinator.tasks["t1"].round, "kind", "") == "evaluate")
    tasks = [await assigned(c) for c in workers]
    assert {t["kind"] for t in tasks} == {"evaluate"}
    answers = await asyncio.gather(
        *(
            _send_eval(c, t, count=10, loss_sum=4.0, correct=8)
            for c, t in zip(workers, tasks, strict=True)
        )
    )
    assert [a["type"] for a in answers] == ["ack"] * 3
    await _until(lambda: any(o.kind == "evaluate" for o in server.outcomes))

    def read(s: Any) -> Any:
        return s.list_evaluations("t1"), s.list_ledger("t1"), s.get_round("t1", 2)

    (record,), ledger, made = await server.store.read(read)
    assert record.noise_multiplier == 2.0 and not record.withheld
    # sigma = z x bound: 40 on count and correct (bound 20), 400 on loss_sum (bound 10 x 20).
    exact = (30.0, 12.0, 24.0)
    released = (record.count, record.loss_sum, record.correct)
    assert all(r != e for r, e in zip(released, exact, strict=True))  # P(no noise) = 0
    assert all(abs(r - e) < 8 * s for r, e, s in zip(released, exact, (40, 400, 40), strict=True))  # type: ignore[operator]
    assert record.accuracy is None or 0.0 <= record.accuracy <= 1.0
    assert record.loss is None or 0.0 <= record.loss <= 10.0
    assert [(e.round, e.kind) for e in ledger] == [(1, "train"), (2, "evaluate")]
    charged = ledger[1]
    assert (charged.sampling_rate, charged.noise_multiplier) == (1.0, 2.0 / math.sqrt(3))
    # ε after both: dp-accounting, called directly, on one Gaussian per released round.
    acct = pld.PLDAccountant()
    acct.compose(dp_accounting.GaussianDpEvent(1.0))  # the training round (q = 1, z = 1)
    acct.compose(dp_accounting.GaussianDpEvent(2.0 / math.sqrt(3)))  # the evaluation
    delta = config.privacy.delta  # type: ignore[union-attr]
    assert charged.epsilon == pytest.approx(acct.get_epsilon(delta), rel=1e-9)
    assert charged.epsilon > ledger[0].epsilon
    assert made is not None and made.metrics["epsilon"] == charged.epsilon
    runtime = server.coordinator.tasks["t1"]
    assert runtime.ledger is not None and runtime.ledger.spent == charged.epsilon
    assert len(runtime.ledger.events) == 1 and len(runtime.ledger.evaluations) == 1


def _dp(mechanism: str = "poisson") -> PrivacyConfig:
    extra = {"mechanism": "dp_ftrl", "min_separation": 4, "accountant": "rdp"}
    raw = {"population": 1000, "noise_multiplier": 1.5, "epsilon": 3.0}
    return PrivacyConfig.from_dict(
        raw | (extra if mechanism == "dp_ftrl" else {}), expected_reports=100
    )


def test_the_ledger_composes_evaluations_with_either_mechanism() -> None:
    import dp_accounting
    from dp_accounting import rdp

    poisson = PrivacyLedger(_dp())
    event = evaluation_event(3.0)
    assert event == RoundEvent(1.0, 3.0 / math.sqrt(3))
    for _ in range(3):
        poisson.record(poisson.next_event(), 0.0)
    check = poisson.check_evaluation(event)
    assert check.after == accountant_epsilon(
        [RoundEvent(0.1, 1.5, 3), event], poisson.config.delta, "pld"
    )
    trained_only = accountant_epsilon([RoundEvent(0.1, 1.5, 3)], poisson.config.delta, "pld")
    assert check.after > trained_only  # the evaluation costs something
    ftrl = PrivacyLedger(_dp("dp_ftrl"))
    for _ in range(5):
        ftrl.record(ftrl.next_event(), 0.0)
    ftrl.record_evaluation(event, 0.0)
    after = ftrl.check_next().after
    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    acct.compose(
        dp_accounting.ComposedDpEvent(
            [
                dp_accounting.SelfComposedDpEvent(
                    dp_accounting.SingleEpochTreeAggregationDpEvent(1.5, 4), 1
                ),
                dp_accounting.SingleEpochTreeAggregationDpEvent(1.5, 2),
                dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(event.z), 1),
            ]
        )
    )
    assert after == pytest.approx(acct.get_epsilon(ftrl.config.delta), rel=1e-12)
    # The budget holds for evaluations too, and says which release it refused.
    tight = PrivacyLedger(
        PrivacyConfig.from_dict({**_dp().to_dict(), "epsilon": 0.5}, expected_reports=100)
    )
    refused = tight.check_evaluation(evaluation_event(0.5))
    assert not refused.allowed and "one more evaluation would make" in refused.reason
    # A restarted coordinator rebuilds both kinds from the stored rows.
    rows = [(0.1, 1.5, 1.0, "train"), (1.0, event.z, 2.0, "evaluate")]
    rebuilt = PrivacyLedger.from_entries(_dp(), rows)
    assert (rebuilt.events, rebuilt.evaluations, rebuilt.spent) == (
        [RoundEvent(0.1, 1.5)],
        [event],
        2.0,
    )


# -- restarts ---------------------------------------------------------------------------------


async def test_an_open_evaluation_round_resumes_after_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    config = eval_task(
        rounds={"goal": 2, "min_reports": 2}, evaluation={"goal": 3, "min_reports": 2}
    )

    async def start(clock: Clock) -> tuple[Coordinator, AsyncStore]:
        store = AsyncStore(lambda: SQLiteStore(db))
        settings = load_settings(environ={}, overrides={"monitor_k": 2})
        c = Coordinator(store, settings, clock=clock)
        await c.start()
        return c, store

    async def checkin(c: Coordinator, worker: str) -> Task:
        await c.on_hello(Hello(worker, {"kind": "cpython"}, "opted_in"))
        task = (await c.on_checkin(worker, Checkin())).message
        assert isinstance(task, Task), task
        return task

    def sums(task: Task, count: int) -> EvalReport:
        return EvalReport(
            "t1",
            task.round,
            task.nonce,
            {"count": count, "loss_sum": 1.0 * count, "correct": count - 1},
        )

    clock = Clock()
    c, store = await start(clock)
    await c.add_task(config)
    trained = {w: await checkin(c, w) for w in ("w-a", "w-b")}
    zeros = np.zeros(11, np.float32)
    await asyncio.gather(
        *(c.on_update(w, _update(t), frame_of(config, t.nonce, zeros)) for w, t in trained.items())
    )
    await _until(lambda: c.tasks["t1"].round is None and not c.tasks["t1"].closing)
    await c.tick()  # opens the evaluation round
    assert isinstance(c.tasks["t1"].round, EvalRound)
    evals = {w: await checkin(c, w) for w in ("w-a", "w-b")}
    assert {t.kind for t in evals.values()} == {"evaluate"}
    acks = await asyncio.gather(*(c.on_eval_report(w, sums(t, 5)) for w, t in evals.items()))
    assert [type(a.message).__name__ for a in acks] == ["Ack", "Ack"]  # durable: a checkpoint
    await c.close()
    await store.close()

    c, store = await start(clock)  # a restart: the evaluation round goes on where it stood
    rnd = c.tasks["t1"].round
    assert isinstance(rnd, EvalRound) and (rnd.number, rnd.reported) == (2, 2)
    again = (await c.on_checkin("w-a", Checkin())).message
    assert getattr(again, "reason", None) == "already_reported"
    third = await checkin(c, "w-c")
    assert (third.kind, third.round) == ("evaluate", 2)
    assert type((await c.on_eval_report("w-c", sums(third, 7))).message).__name__ == "Ack"
    await _until(lambda: c.tasks["t1"].round is None and not c.tasks["t1"].closing)
    (record,) = await store.read(lambda s: s.list_evaluations("t1"))
    assert isinstance(record, EvaluationRecord)
    assert (record.reports, record.count, record.loss_sum, record.correct) == (3, 17, 17.0, 14)
    assert c.tasks["t1"].evaluated_version == 1
    await c.tick()  # training goes on
    rnd = c.tasks["t1"].round
    assert rnd is not None and (rnd.kind, rnd.number, rnd.model_version) == ("train", 3, 1)
    await c.close()
    await store.close()


def _update(task: Task) -> Any:
    from dandelion.protocol import Update

    return Update("t1", task.round, task.nonce, num_examples=1, unclipped=True)


# -- the task file ----------------------------------------------------------------------------


def test_the_evaluation_table_is_strict_and_round_trips() -> None:
    config = eval_task(rounds={"goal": 7, "deadline_s": 30.0}, evaluation={"every": 3})
    plan = config.evaluation
    assert plan is not None
    assert (plan.every, plan.holdout, plan.goal, plan.deadline_s) == (3, 0.2, 7, 30.0)
    assert (plan.max_examples, plan.max_loss, plan.noise_multiplier) == (100, 10.0, None)
    assert TaskConfig.from_dict(config.to_dict()) == config
    private = eval_task(privacy={"population": 300, "noise_multiplier": 1.3, "epsilon": 5.0})
    assert private.evaluation is not None and private.evaluation.noise_multiplier == 1.3
    assert TaskConfig.from_dict(private.to_dict()) == private
    assert eval_task().to_dict()["evaluation"]["every"] == 1
    for table, says in [
        ({}, "evaluation.every: required"),
        ({"every": 0}, "evaluation.every"),
        ({"every": 1, "holdout": 0}, "evaluation.holdout"),
        ({"every": 1, "holdout": 0.95}, "evaluation.holdout"),
        ({"every": 1, "evry": 2}, "did you mean 'every'"),
        ({"every": 1, "noise_multiplier": 1.0}, "only with [privacy]"),
        ({"every": 1, "goal": 2, "min_reports": 3}, "evaluation.min_reports"),
        ({"every": 1, "max_loss": 5000}, "evaluation.max_loss"),
    ]:
        raw = {**config.to_dict(), "evaluation": table}
        with pytest.raises(TaskConfigError, match=re_escape(says)):
            TaskConfig.from_dict(raw)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_an_edit_may_not_add_evaluation_or_raise_the_holdout_once_the_task_trained() -> None:
    from dandelion.coordinator import TaskChangeError, create_task, edit_task
    from dandelion.storage import MemoryStore, ModelVersion

    def edited(config: TaskConfig, evaluation: dict[str, Any] | None) -> TaskConfig:
        raw = config.to_dict()
        raw["model"].pop("param_count")
        raw.pop("evaluation", None)
        if evaluation is not None:
            raw["evaluation"] = evaluation
        return TaskConfig.from_dict(raw)

    store = MemoryStore()
    config = eval_task(evaluation={"holdout": 0.3})
    plain = edited(config, None)
    create_task(store, plain, 1.0)
    # Before any training round everything goes: nothing was trained on yet.
    assert edit_task(store, "t1", config, 2.0) == 2
    store.save_model_version(ModelVersion("t1", 1, 1, b"\0" * 44, b"", 3.0, {}))
    for change, field in (
        ({"every": 1, "holdout": 0.4}, "evaluation.holdout"),
        (None, None),  # removing the table is allowed
        ({"every": 1, "holdout": 0.3}, "evaluation"),  # adding it back is not
    ):
        new = edited(config, change)
        if field is None:
            assert edit_task(store, "t1", new, 4.0) == 3
            continue
        with pytest.raises(TaskChangeError) as refused:
            edit_task(store, "t1", new, 4.0)
        assert refused.value.field == field
        assert "create a new task" in str(refused.value)
    store2 = MemoryStore()
    create_task(store2, config, 1.0)
    store2.save_model_version(ModelVersion("t1", 1, 1, b"\0" * 44, b"", 3.0, {}))
    lower = edited(config, {"every": 2, "holdout": 0.1, "goal": 5, "min_reports": 1})
    assert edit_task(store2, "t1", lower, 4.0) == 2  # what stays held out was never trained on


def test_the_emulator_leaves_evaluation_out() -> None:
    from dandelion.emulation import PopulationConfig
    from dandelion.emulation.plan import make_plan
    from dandelion.emulation.population import default_task

    config = PopulationConfig(size=20, seed=3, rounds=1, history_days=2.0, test_users=2)
    raw = {**default_task(2, 1), "evaluation": {"every": 1}}
    assert TaskConfig.from_dict(raw).evaluation is not None
    assert make_plan(config, task=raw).task.evaluation is None
