"""The demo task with and without differential privacy, 1,000 emulated workers per round.

    .venv/bin/python benchmarks/dp_demo.py --json

A population of ``--population`` synthetic users (the demo's non-IID browsing histories, one
user per worker) is made once, split across ``--shards`` processes. Each round every user
checks in — an eager tenth of them ``--eager-checkins`` times, in a random order — and the
coordinator decides who takes part, as it would in a deployment:

- **non-private**: the demo task as ``dandelion demo`` runs it (FedAvg weighted by examples,
  clip norm 10): the first ``per_round`` to check in, the round closing at its goal;
- **poisson**: the same task with a ``[privacy]`` table — uniform weights, adaptive clipping,
  noise multiplier z: each user takes part by the coordinator's own coin of probability
  q = per_round / population, and the round closes at its deadline;
- **dp_ftrl**: ``mechanism = "dp_ftrl"`` — fixed clipping, tree aggregation over trees of
  ``--separation`` rounds, and no user in two rounds less than ``--separation`` apart (the
  coordinator refuses it with ``come_back`` "separation"); first come, first served otherwise.

Each DP run's budget is enforced by the coordinator and its ε read from its ledger. Each run
also reports how often eager and lazy users took part.

What runs is the real coordinator (``Coordinator`` with its SQLite state, ledger and budget
check), spoken to through the real sans-I/O sessions on both sides and the conversation driver
that the WebSocket endpoint uses (``WorkerSession`` ↔ ``ConversationDriver``, with schema
validation), in one process with no sockets. Local training
is ``browser_worker.training.train_local`` — the browser worker's own pure-Python code — run
in the shard processes; only scoring the global model on held-out users uses numpy (a sparse
matrix product instead of a Python loop). After each round the model is scored on
``--test-users`` held-out users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import random
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from browser_worker.datasets import revisit_dataset  # noqa: E402
from browser_worker.training import Hyper, evaluate, train_local  # noqa: E402
from dandelion.coordinator import Coordinator, RoundOutcome, TaskConfig  # noqa: E402
from dandelion.emulation.demo import demo_task  # noqa: E402
from dandelion.protocol import (  # noqa: E402
    Acked,
    Assigned,
    ComeBackLater,
    ErrorReceived,
    Hello,
    Rejected,
    WorkerSession,
)
from dandelion.settings import load_settings  # noqa: E402
from dandelion.storage import AsyncStore, SQLiteStore  # noqa: E402
from dandelion.taskspec.models import Example, ModelSpec  # noqa: E402
from dandelion.taskspec.objectives.revisit import FeatureConfig, num_features  # noqa: E402
from dandelion.taskspec.synthetic import SyntheticConfig  # noqa: E402
from dandelion.transport import ConversationDriver, SchemaValidator  # noqa: E402

Packed = tuple[array, array, array, bytes]  # indices, values, offsets, labels


# -- the population, in shard processes -----------------------------------------------------------


def _pack(examples: list[Example]) -> Packed:
    idx, val, off = array("i"), array("d"), array("i", [0])
    for ex in examples:
        idx.extend(ex.indices)
        val.extend(ex.values)
        off.append(len(idx))
    return idx, val, off, bytes(ex.label for ex in examples)


def _unpack(p: Packed) -> list[Example]:
    idx, val, off, lab = p
    return [
        Example(tuple(idx[off[k] : off[k + 1]]), tuple(val[off[k] : off[k + 1]]), lab[k])
        for k in range(len(lab))
    ]


def _user_seed(seed: int, uid: int) -> int:
    # The seeds make_population(...) uses: user u of the demo is user u here, and test users
    # come from the same disjoint range.
    return seed * 1_000_003 + uid


def _shard_main(conn: Connection, shard: int, shards: int, opts: dict[str, Any]) -> None:
    """Make this shard's users, then train whoever the coordinator assigned, until told to stop."""
    synthetic = SyntheticConfig(heterogeneity=opts["heterogeneity"])
    fc = FeatureConfig()
    spec = ModelSpec("logreg", num_features(fc))
    seed = opts["seed"]
    users = {
        uid: _pack(revisit_dataset(_user_seed(seed, uid), synthetic=synthetic, features=fc))
        for uid in range(shard, opts["population"], shards)
    }
    test = [
        ex
        for u in range(shard, opts["test_users"], shards)
        for ex in revisit_dataset(_user_seed(seed, 500_000 + u), synthetic=synthetic, features=fc)
    ]
    conn.send(("ready", _pack(test), sum(len(p[3]) for p in users.values())))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        _, params_bytes, hyper_raw, task, rnd, uids = msg
        params = array("f", params_bytes).tolist()
        hyper = Hyper.from_dict(hyper_raw)
        out = []
        for uid in uids:
            worker_id = _worker_id(uid)
            rng = random.Random(f"{worker_id}:{task}:{rnd}")  # what Worker uses
            r = train_local(spec, params, _unpack(users[uid]), hyper, rng)
            delta = array("f", r.clipped_delta).tobytes()
            out.append((uid, delta, r.num_examples, r.unclipped, r.loss, r.accuracy, r.norm))
        conn.send(("trained", out))


def _worker_id(uid: int) -> str:
    return f"user-{uid:07d}"


class Shards:
    def __init__(self, opts: dict[str, Any], count: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for k in range(count):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_shard_main, args=(theirs, k, count, opts), daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)
        self.count = count

    def ready(self) -> tuple[list[Packed], int]:
        tests, examples = [], 0
        for conn in self.conns:
            tag, test, n = conn.recv()
            assert tag == "ready"
            tests.append(test)
            examples += n
        return tests, examples

    def train(
        self, params: bytes, hyper: dict[str, Any], task: str, rnd: int, uids: list[int]
    ) -> list[tuple[Any, ...]]:
        for k, conn in enumerate(self.conns):
            conn.send(("train", params, hyper, task, rnd, [u for u in uids if u % self.count == k]))
        out: list[tuple[Any, ...]] = []
        for conn in self.conns:
            tag, part = conn.recv()
            assert tag == "trained"
            out.extend(part)
        return out

    def stop(self) -> None:
        for conn in self.conns:
            conn.send(("stop",))
        for proc in self.procs:
            proc.join(timeout=10)


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class TestSet:
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, parts: list[Packed]) -> TestSet:
        indptr, indices, values, labels = [np.zeros(1, np.int64)], [], [], []
        base = 0
        for idx, val, off, lab in parts:
            indptr.append(np.asarray(off[1:], np.int64) + base)
            base += len(idx)
            indices.append(np.asarray(idx, np.int64))
            values.append(np.asarray(val, np.float64))
            labels.append(np.frombuffer(lab, np.uint8))
        return cls(
            np.concatenate(indptr),
            np.concatenate(indices),
            np.concatenate(values),
            np.concatenate(labels).astype(np.int64),
        )

    def accuracy(self, params: np.ndarray) -> float:
        from scipy.sparse import csr_matrix

        f = params.size - 1
        x = csr_matrix((self.values, self.indices, self.indptr), shape=(self.labels.size, f))
        z = x @ params[:f].astype(np.float64) + float(params[f])
        # evaluate() predicts class 1 when p > 0.5, i.e. z > 0 (a tie goes to class 0)
        return float(np.mean((z > 0).astype(np.int64) == self.labels))


# -- one emulated connection, both sessions in memory ---------------------------------------------


class _Outbox:
    """The coordinator's end of an emulated connection: what it sends is kept for the worker."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed = False

    async def send(self, data: str | bytes, /) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str, /) -> None:
        self.closed = True


class Link:
    """A worker's session joined to the coordinator through the conversation driver (the one
    the WebSocket endpoint uses), without a socket."""

    def __init__(self, uid: int, driver: ConversationDriver) -> None:
        self.uid = uid
        self.worker = WorkerSession()
        self.outbox = _Outbox()
        self.conversation = driver.open(self.outbox)
        self.worker.send_hello(Hello(_worker_id(uid), {"kind": "emulated"}, "opted_in"))

    async def pump(self) -> list[Any]:
        """Deliver what the worker queued, let the coordinator answer, return the worker's
        events."""
        for data in self.worker.data_to_send():
            await self.conversation.receive(data)
        events = []
        sent, self.outbox.sent = self.outbox.sent, []
        for data in sent:
            got = (
                self.worker.receive_text(data)
                if isinstance(data, str)
                else self.worker.receive_bytes(data)
            )
            if isinstance(got, ErrorReceived):
                raise RuntimeError(f"the coordinator answered an error: {got.error}")
            if got is not None:
                events.append(got)
        return events

    async def checkin(self) -> tuple[Assigned | None, str]:
        """The task, or None and the reason of the ``come_back``."""
        self.worker.send_checkin()
        for event in await self.pump():
            if isinstance(event, Assigned):
                return event, ""
            assert isinstance(event, ComeBackLater), event
            return None, event.come_back.reason
        raise RuntimeError("the coordinator did not answer a check-in")

    async def report(
        self, delta: bytes, n: int, unclipped: bool, metrics: dict[str, float], norm: float
    ) -> str:
        values = array("f", delta).tolist()
        self.worker.send_update(
            values, num_examples=n, unclipped=unclipped, metrics=metrics, norm=norm
        )
        for event in await self.pump():
            if isinstance(event, Acked):
                return "ack"
            if isinstance(event, Rejected):
                return event.reject.reason
        return "none"


# -- one run --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def dp_task_config(
    base: TaskConfig, opts: dict[str, Any], mechanism: str, noise: float
) -> TaskConfig:
    """The demo task with ``[privacy]``: uniform weights; under ``poisson`` adaptive clipping
    from C = ``initial_clip``, under ``dp_ftrl`` fixed clipping at it (tree aggregation needs a
    fixed sensitivity) with a tree and minimum separation of ``separation`` rounds."""
    raw = base.to_dict()
    raw["server"] = {"optimizer": "fedavg", "weighting": "uniform"}
    raw["hyper"] = {**raw["hyper"], "clip_norm": opts["initial_clip"]}
    privacy: dict[str, Any] = {
        "population": opts["population"],
        "noise_multiplier": noise,
        "epsilon": opts["epsilon_budget"],
        "mechanism": mechanism,
    }
    if mechanism == "poisson":
        privacy["clipping"] = "adaptive"
    else:
        privacy["clipping"] = "fixed"
        privacy["min_separation"] = opts["separation"]
    raw["privacy"] = privacy
    return TaskConfig.from_dict(raw)


def eager_users(opts: dict[str, Any]) -> set[int]:
    """The users who check in ``eager_checkins`` times a round (the rest once): a fixed,
    seeded ``eager_fraction`` of the population."""
    rng = np.random.default_rng([opts["seed"], 1])
    count = round(opts["eager_fraction"] * opts["population"])
    return set(rng.permutation(opts["population"])[:count].tolist())


def checkin_order(opts: dict[str, Any], number: int, eager: set[int]) -> list[int]:
    """Round ``number``'s check-ins: every user once, eager users ``eager_checkins`` times, in
    a random order (the same for every run)."""
    order = [
        u
        for u in range(opts["population"])
        for _ in range(opts["eager_checkins"] if u in eager else 1)
    ]
    rng = np.random.default_rng([opts["seed"], 2, number])
    return [order[int(i)] for i in rng.permutation(len(order))]


async def run(
    mechanism: str,
    noise: float | None,
    opts: dict[str, Any],
    shards: Shards,
    test: TestSet,
    db: str,
) -> dict[str, Any]:
    """One run: ``mechanism`` "none" (no privacy), "poisson" or "dp_ftrl" with noise
    multiplier ``noise``. Every user checks in every round; the coordinator decides who takes
    part."""
    private = mechanism != "none"
    goal, rounds, population = opts["per_round"], opts["rounds"], opts["population"]
    base = demo_task(goal, rounds, FeatureConfig().num_buckets)
    raw = base.to_dict()
    raw["rounds"] = {
        "goal": goal,
        "over_selection": 1.0,  # emulated users never drop out
        "min_reports": 0,
        "deadline_s": 600.0,
        "max_rounds": rounds,
    }
    config = TaskConfig.from_dict(raw)
    if noise is not None:
        config = dp_task_config(config, opts, mechanism, noise)
    clock = Clock()
    store = AsyncStore(lambda: SQLiteStore(db))
    coordinator = Coordinator(store, load_settings(environ={}), clock=clock)
    outcomes: list[RoundOutcome] = []
    coordinator.add_listener(outcomes.append)
    await coordinator.start()
    await coordinator.add_task(config)
    runtime = coordinator.tasks[config.name]
    driver = ConversationDriver(coordinator, coordinator.settings, SchemaValidator())
    links: dict[int, Link] = {}
    eager = eager_users(opts)
    taken = {True: 0, False: 0}  # participations of eager (True) and lazy users
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    number = 0
    label = "non-private" if not private else f"{mechanism} z={noise}"
    while len(history) < rounds:
        number += 1
        rnd = runtime.round
        if rnd is None:
            break  # the budget stopped the task
        round_started = time.perf_counter()
        assigned: dict[int, None] = {}
        reasons: dict[str, int] = {}
        params = b""
        hyper: dict[str, Any] = {}
        for uid in checkin_order(opts, number, eager):
            if uid in assigned:
                continue  # it holds this round's task: training, not checking in
            link = links.get(uid)
            if link is None:
                link = links[uid] = Link(uid, driver)
                await link.pump()  # hello -> welcome
            got, reason = await link.checkin()
            if got is not None:
                assigned[uid] = None
                params, hyper = bytes(got.frame.payload), dict(got.task.hyper)
            else:
                reasons[reason] = reasons.get(reason, 0) + 1
        checkin_s = time.perf_counter() - round_started
        trained = shards.train(params, hyper, config.name, rnd.number, list(assigned))
        order = np.random.default_rng([opts["seed"], 3, number]).permutation(len(trained))
        answers: dict[str, int] = {}

        async def one(report: tuple[Any, ...]) -> str:
            uid, delta, n, unclipped, loss, acc, norm = report
            metrics = {"loss": loss, "accuracy": acc}
            return await links[uid].report(delta, n, unclipped, metrics, norm)

        # Reports arrive together: an ack waits for the checkpoint that holds its update; a
        # Poisson round (or one short of its goal) closes at its deadline, which the virtual
        # clock reaches once the coordinator holds every report.
        reports = [asyncio.ensure_future(one(trained[int(i)])) for i in order]
        await _handed_in(reports, rnd)
        if not all(r.done() for r in reports) and runtime.round is rnd and rnd.open:
            clock.now += config.rounds.deadline_s + 1
            await coordinator.tick()
        for reply in await asyncio.gather(*reports):
            answers[reply] = answers.get(reply, 0) + 1
        if runtime.round is rnd and rnd.open:
            clock.now += config.rounds.deadline_s + 1
            await coordinator.tick()
        while runtime.closing or runtime.round is rnd:
            await asyncio.sleep(0.005)
        outcome = outcomes[-1]
        clock.now += 1
        await coordinator.tick()  # opens the next round (after the budget check)
        while runtime.opening:
            await asyncio.sleep(0.005)
        if outcome.status != "completed":
            continue
        for uid in assigned:
            taken[uid in eager] += 1
        accuracy = test.accuracy(outcome.params)
        entry: dict[str, Any] = {
            "round": len(history) + 1,
            "accuracy": round(accuracy, 4),
            "assigned": len(assigned),
            "reports": outcome.reported,
            "turned_away": reasons,
            "refused": {k: v for k, v in answers.items() if k != "ack"},
            "wall_s": round(time.perf_counter() - round_started, 2),
            "checkin_s": round(checkin_s, 2),
        }
        if private:
            entry["epsilon"] = outcome.metrics.get("epsilon")
            entry["clip_norm"] = outcome.metrics.get("clip_norm")
            entry["noise_std"] = outcome.metrics.get("noise_std")  # of the sum, per coordinate
        history.append(entry)
        _say(opts, f"{label} round {entry['round']}: {entry}")
    status = runtime.status
    await coordinator.close()
    await store.close()
    ledger = []
    if private:
        s = SQLiteStore(db)
        ledger = s.list_ledger(config.name)
        s.close()
    released = max(1, len(history))
    lazy_users = population - len(eager)
    return {
        "mechanism": mechanism,
        "noise_multiplier": noise,
        "min_separation": config.privacy.min_separation if config.privacy else None,
        "history": history,
        "final_accuracy": history[-1]["accuracy"] if history else 0.0,
        "status": status,
        "epsilon": ledger[-1].epsilon if ledger else None,
        "delta": config.privacy.delta if config.privacy else None,
        "accountant": config.privacy.accountant if config.privacy else None,
        "ledger_rounds": len(ledger),
        "participation": {
            "eager": round(taken[True] / (max(1, len(eager)) * released), 4),
            "lazy": round(taken[False] / (max(1, lazy_users) * released), 4),
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }


async def _handed_in(reports: list[asyncio.Future[str]], rnd: Any) -> None:
    """Wait until the coordinator has every report: answered (refused or acknowledged), or
    held in the round waiting for its checkpoint — or until the round closed."""
    while rnd.open:
        refused = sum(1 for r in reports if r.done() and r.result() != "ack")
        if all(r.done() for r in reports) or rnd.reported + refused >= len(reports):
            return
        await asyncio.sleep(0.001)


def _say(opts: dict[str, Any], line: str) -> None:
    if opts["progress"]:
        print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=10_000, help="Eligible users [10000].")
    parser.add_argument("--per-round", type=int, default=1000, help="Expected reports [1000].")
    parser.add_argument("--rounds", type=int, default=15, help="Rounds [15].")
    parser.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[1.0],
        help="Noise multiplier z of the Poisson runs; several values: one run each [1.0].",
    )
    parser.add_argument(
        "--ftrl-noise",
        type=float,
        nargs="*",
        default=[3.0],
        help="Noise multiplier z of the DP-FTRL runs (none: no DP-FTRL run) [3.0].",
    )
    parser.add_argument(
        "--separation", type=int, default=8, help="DP-FTRL's min_separation and tree size [8]."
    )
    parser.add_argument(
        "--eager-fraction", type=float, default=0.1, help="Share of eager users [0.1]."
    )
    parser.add_argument(
        "--eager-checkins", type=int, default=10, help="Check-ins per round of an eager user [10]."
    )
    parser.add_argument("--epsilon-budget", type=float, default=10.0, help="ε budget [10].")
    parser.add_argument("--initial-clip", type=float, default=1.0, help="First C [1.0].")
    parser.add_argument("--test-users", type=int, default=500, help="Held-out users [500].")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--heterogeneity", type=float, default=0.5)
    parser.add_argument("--shards", type=int, default=2, help="Training processes [2].")
    parser.add_argument("--json", action="store_true", help="End with one JSON object.")
    parser.add_argument("--svg", default=None, help="Also draw accuracy per round to this file.")
    args = parser.parse_args(argv)
    opts = {
        "population": args.population,
        "per_round": args.per_round,
        "rounds": args.rounds,
        "epsilon_budget": args.epsilon_budget,
        "initial_clip": args.initial_clip,
        "separation": args.separation,
        "eager_fraction": args.eager_fraction,
        "eager_checkins": args.eager_checkins,
        "test_users": args.test_users,
        "seed": args.seed,
        "heterogeneity": args.heterogeneity,
        "progress": not args.json or sys.stderr.isatty(),
    }
    plan = [("poisson", z) for z in args.noise] + [("dp_ftrl", z) for z in args.ftrl_noise]
    t0 = time.perf_counter()
    shards = Shards(opts, args.shards)
    try:
        parts, examples = shards.ready()
        test = TestSet.of(parts)
        _check_scoring(test, parts)
        setup_s = time.perf_counter() - t0
        _say(
            opts,
            f"population ready: {args.population} users, {examples} examples, "
            f"{test.labels.size} test examples ({setup_s:.0f} s)",
        )
        with tempfile.TemporaryDirectory(prefix="dandelion-dp-") as tmp:
            plain = asyncio.run(run("none", None, opts, shards, test, str(Path(tmp) / "plain.db")))
            dps = [
                asyncio.run(run(m, z, opts, shards, test, str(Path(tmp) / f"dp{i}.db")))
                for i, (m, z) in enumerate(plan)
            ]
    finally:
        shards.stop()
    majority = max(float(test.labels.mean()), 1 - float(test.labels.mean()))
    base = plain["final_accuracy"]
    runs = [
        {
            "mechanism": dp["mechanism"],
            "noise_multiplier": dp["noise_multiplier"],
            "min_separation": dp["min_separation"],
            "epsilon": dp["epsilon"],
            "delta": dp["delta"],
            "accountant": dp["accountant"],
            "final_accuracy": dp["final_accuracy"],
            "ratio": round(dp["final_accuracy"] / base, 4),
            "participation": dp["participation"],
            "accuracy_per_round": [h["accuracy"] for h in dp["history"]],
            "epsilon_per_round": [h["epsilon"] for h in dp["history"]],
            "clip_norm_per_round": [h["clip_norm"] for h in dp["history"]],
            "noise_std_per_round": [h["noise_std"] for h in dp["history"]],
            "reports_per_round": [h["reports"] for h in dp["history"]],
            "round_wall_s": [h["wall_s"] for h in dp["history"]],
            "status": dp["status"],
            "wall_s": dp["wall_s"],
        }
        for dp in dps
    ]
    first = runs[0]
    summary = {
        "population": args.population,
        "per_round": args.per_round,
        "q": args.per_round / args.population,
        "rounds": args.rounds,
        "eager_fraction": args.eager_fraction,
        "eager_checkins": args.eager_checkins,
        "delta": dps[0]["delta"],
        "mechanism": first["mechanism"],
        "accountant": first["accountant"],
        "noise_multiplier": first["noise_multiplier"],
        "epsilon": first["epsilon"],
        "non_private_accuracy": base,
        "dp_accuracy": first["final_accuracy"],
        "ratio": first["ratio"],
        "majority_class": round(majority, 4),
        "non_private_accuracy_per_round": [h["accuracy"] for h in plain["history"]],
        "non_private_reports_per_round": [h["reports"] for h in plain["history"]],
        "non_private_round_wall_s": [h["wall_s"] for h in plain["history"]],
        "non_private_participation": plain["participation"],
        "non_private_wall_s": plain["wall_s"],
        "dp_runs": runs,
        "setup_s": round(setup_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if args.svg:
        Path(args.svg).write_text(_svg(summary))
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2))
    ok = all(r["ratio"] >= 0.9 and (r["epsilon"] or math.inf) <= 10 for r in runs)
    return 0 if ok else 1


def _svg(summary: dict[str, Any]) -> str:
    """Accuracy per round, the non-private run and each DP run, as a small line chart."""
    series = [("non-private", summary["non_private_accuracy_per_round"], "#444")]
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    for run_, colour in zip(summary["dp_runs"], colours * 4, strict=False):
        label = f"{run_['mechanism']} z={run_['noise_multiplier']:g}, ε={run_['epsilon']:.2f}"
        series.append((label, run_["accuracy_per_round"], colour))
    values = [v for _, ys, _ in series for v in ys]
    lo, hi = math.floor(min(values) * 100) / 100, math.ceil(max(values) * 100) / 100
    w, h, left, top, right, bottom = 640, 360, 60, 20, 20, 40
    rounds = max(len(ys) for _, ys, _ in series)

    def x(i: int) -> float:
        return left + (w - left - right) * (i / max(1, rounds - 1))

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - (v - lo) / max(1e-9, hi - lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>',
        f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">round</text>',
    ]
    steps = 5
    for k in range(steps + 1):
        v = lo + (hi - lo) * k / steps
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    out.extend(
        f'<text x="{x(i):.1f}" y="{h - bottom + 14}" text-anchor="middle">{i + 1}</text>'
        for i in range(rounds)
    )
    for n, (label, ys, colour) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(ys))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = h - bottom - 12 - 16 * (len(series) - 1 - n)  # legend bottom right
        out.append(
            f'<line x1="{w - 230}" y1="{ly - 4}" x2="{w - 210}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{w - 204}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _check_scoring(test: TestSet, parts: list[Packed]) -> None:
    """The numpy scoring agrees with the worker's own evaluate() on some random model."""
    spec = ModelSpec("logreg", num_features(FeatureConfig()))
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.3, spec.param_count).astype(np.float32)
    sample = [ex for p in parts for ex in _unpack(p)]
    _, reference = evaluate(spec, params.tolist(), sample)
    assert abs(test.accuracy(params) - reference) < 1e-9, (test.accuracy(params), reference)


if __name__ == "__main__":
    raise SystemExit(main())
