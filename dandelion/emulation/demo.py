"""``dandelion demo``: a real coordinator and N workers on loopback, against central training.

The coordinator is the real aiohttp application with its SQLite state; each worker is the real
``browser_worker`` code on the CPython host, over a real WebSocket, training on its own user's
synthetic browsing history (non-IID: users differ in interests and habits). After every round
the global model is scored on held-out users; at the end the same model is trained centrally on
the pooled data of all users, the baseline a federated model should approach.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from browser_worker.datasets import make_population
from browser_worker.host.cpython import CPythonHost
from browser_worker.training import Hyper, evaluate, train_local
from browser_worker.worker import DataProvider, Worker, WorkerConfig
from dandelion.taskspec.models import Example, init_params

from ..app import COORDINATOR, make_app
from ..coordinator import RoundOutcome, TaskConfig
from ..settings import load_settings

__all__ = [
    "BASELINE_HYPER",
    "DEMO_HYPER",
    "DemoOptions",
    "central_baseline",
    "demo_task",
    "run_demo",
]

#: Local training of the demo task: each worker, each round.
DEMO_HYPER: dict[str, Any] = {
    "learning_rate": 0.3,
    "epochs": 3,
    "batch_size": 8,
    "clip_norm": 10.0,
}
#: The central baseline: plain SGD on the pooled data, run to convergence (more epochs do not
#: raise its test accuracy on these populations).
BASELINE_HYPER: dict[str, Any] = {
    "learning_rate": 0.1,
    "epochs": 20,
    "batch_size": 16,
    "clip_norm": 1e9,
}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    workers: int = 20
    rounds: int = 15
    seed: int = 7
    heterogeneity: float = 0.5
    db: str | None = None
    progress: bool = True
    timeout_s: float = 600.0


def demo_task(workers: int, rounds: int, num_buckets: int) -> TaskConfig:
    """The demo's task: every worker every round, FedAvg weighted by examples."""
    return TaskConfig.from_dict(
        {
            "name": "revisit-7d",
            "objective": "revisit_7d",
            "features": {"num_buckets": num_buckets, "horizon_days": 7.0},
            "model": {"kind": "logreg"},
            "hyper": DEMO_HYPER,
            "server": {"optimizer": "fedavg", "weighting": "examples"},
            "rounds": {
                "goal": workers,
                "over_selection": 1.0,
                "min_reports": max(1, workers // 2),
                "deadline_s": 60.0,
                "max_rounds": rounds,
            },
        }
    )


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; return the figures printed by ``dandelion demo --json``."""
    started = time.perf_counter()
    population = make_population(options.workers, options.seed, options.heterogeneity)
    spec = population.spec
    config = demo_task(options.workers, options.rounds, population.feature_config.num_buckets)
    with tempfile.TemporaryDirectory(prefix="dandelion-demo-") as tmp:
        db = options.db or str(Path(tmp) / "demo.db")
        settings = load_settings(
            environ={},
            overrides={"db": db, "port": 0, "tick_s": 0.05, "pace_min_s": 0.05, "pace_max_s": 2.0},
        )
        history: list[dict[str, Any]] = []
        done = asyncio.Event()

        def on_round(outcome: RoundOutcome) -> None:
            if outcome.status != "completed":
                _say(options, f"round {outcome.round}: abandoned ({outcome.reported} reports)")
                return
            _, accuracy = evaluate(spec, outcome.params.tolist(), population.test)
            history.append(
                {
                    "round": len(history) + 1,
                    "accuracy": accuracy,
                    "reports": outcome.reported,
                    "train_loss": outcome.metrics.get("loss"),
                    "seconds": outcome.closed_at - outcome.opened_at,
                }
            )
            _say(
                options,
                f"round {len(history):>3}/{options.rounds}: {outcome.reported} updates, "
                f"test accuracy {accuracy:.3f}",
            )
            if len(history) >= options.rounds:
                done.set()

        app = make_app(settings, on_coordinator=lambda c: c.add_listener(on_round))
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"ws://127.0.0.1:{port}/ws"
        _say(options, f"coordinator on {url}; {options.workers} workers, {options.rounds} rounds")
        workers: list[Worker] = []
        runs: list[asyncio.Task[Any]] = []
        try:
            await app[COORDINATOR].add_task(config)
            for i, examples in enumerate(population.train):
                worker = Worker(
                    CPythonHost(),
                    WorkerConfig(url, worker_id=f"demo-worker-{i:05d}", keep_open_s=5.0),
                    _fixed(examples),
                    rng=random.Random(options.seed * 100_003 + i),
                )
                workers.append(worker)
                runs.append(asyncio.create_task(worker.run()))
            await asyncio.wait_for(done.wait(), options.timeout_s)
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*runs, return_exceptions=True)
            await runner.cleanup()
    baseline = central_baseline(population)
    _say(options, f"central baseline on pooled data: test accuracy {baseline:.3f}")
    final = history[-1]["accuracy"] if history else 0.0
    return {
        "rounds": len(history),
        "workers": options.workers,
        "final_accuracy": round(final, 4),
        "baseline_accuracy": round(baseline, 4),
        "gap_points": round(100 * (baseline - final), 2),
        "param_count": spec.param_count,
        "accuracy_per_round": [round(h["accuracy"], 4) for h in history],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def central_baseline(population: Any) -> float:
    """Train the same model on all users' data pooled in one place; return test accuracy."""
    spec = population.spec
    pooled = [ex for user in population.train for ex in user]
    params = init_params(spec, random.Random(0))
    hyper = Hyper.from_dict(BASELINE_HYPER)
    result = train_local(spec, params, pooled, hyper, random.Random(1))
    trained = [p + d for p, d in zip(params, result.delta, strict=True)]
    return evaluate(spec, trained, population.test)[1]


def _fixed(examples: list[Example]) -> DataProvider:
    """A data provider for a worker whose local data is already made."""

    def provide(objective: str, features: dict[str, Any], now: float) -> list[Example]:
        return examples

    return provide


def _say(options: DemoOptions, line: str) -> None:
    if options.progress:
        print(line, file=sys.stderr, flush=True)
