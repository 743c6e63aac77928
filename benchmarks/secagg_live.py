"""Secure rounds through the live coordinator beside plain rounds of the same task, in one run.

n CPython workers (``browser_worker.Worker`` on ``CPythonHost``: the ``websockets`` client,
``cryptography`` and numpy) take part over real loopback WebSockets in the rounds of the
coordinator that ``make_app`` builds (SQLite state file, the real conversation driver). The
same task runs plain and with ``[secure_aggregation]``, alternately, ``--repeats`` times each;
every run takes ``--rounds`` rounds. A round's time is from its opening to its commit, as its
round outcome says (the workers' check-ins, training, the protocol's phases, the commit). It
reports the median, fastest and slowest round of each kind and the ratio of the medians
(``secure_vs_plain_round_s``). Workers and coordinator share one process, so the figures are
of the whole system on this machine, not of the coordinator alone (``benchmarks/secagg.py``
times the coordinator's own work).

    python benchmarks/secagg_live.py [--workers 20] [--features 1000] [--rounds 3]
                                     [--repeats 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from browser_worker.host.cpython import CPythonHost
from browser_worker.worker import Worker, WorkerConfig
from dandelion.app import make_app
from dandelion.coordinator import RoundOutcome, TaskConfig
from dandelion.settings import load_settings
from dandelion.taskspec.models import Example

__all__ = ["measure"]


def _task(n: int, features: int, secure: bool) -> TaskConfig:
    raw: dict[str, Any] = {
        "name": "bench",
        "objective": "page_examples",
        "model": {"kind": "logreg", "num_features": features},
        "hyper": {"learning_rate": 0.5, "epochs": 1, "batch_size": 8, "clip_norm": 1.0},
        "rounds": {"goal": n, "over_selection": 1.0, "min_reports": n, "deadline_s": 60.0},
    }
    if secure:
        raw["secure_aggregation"] = {}
    return TaskConfig.from_dict(raw)


def _data(seed: int, features: int) -> list[Example]:
    rng = random.Random(seed)
    return [
        Example(
            tuple(sorted(rng.sample(range(features), 8))),
            tuple(rng.uniform(0.0, 1.0) for _ in range(8)),
            rng.randrange(2),
        )
        for _ in range(32)
    ]


def _provider(data: list[Example]) -> Any:
    return lambda *_: data


async def measure(
    n: int, features: int, rounds: int, *, secure: bool, workdir: Path
) -> list[float]:
    """The times (s) of ``rounds`` rounds of ``n`` workers, plain or secure."""
    outcomes: list[RoundOutcome] = []
    settings = load_settings(
        environ={},
        overrides={
            "db": str(workdir / f"{'secure' if secure else 'plain'}-{random.random()}.db"),
            "port": 0,
            "tick_s": 0.02,
            "pace_min_s": 0.01,
            "pace_max_s": 0.1,
        },
    )
    app = make_app(settings, on_coordinator=lambda c: c.add_listener(outcomes.append))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        from dandelion.app import COORDINATOR

        await app[COORDINATOR].add_task(_task(n, features, secure))
        url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
        workers = [
            Worker(
                CPythonHost(),
                WorkerConfig(url, worker_id=f"bench-worker-{i:04d}"),
                _provider(_data(i, features)),
            )
            for i in range(n)
        ]
        runs = [asyncio.create_task(w.run(max_updates=rounds)) for w in workers]
        await asyncio.wait_for(asyncio.gather(*runs), 600)
        done = [o for o in outcomes if o.status == "completed"]
        if len(done) < rounds:
            raise RuntimeError(f"{len(done)} of {rounds} rounds completed")
        return [o.closed_at - o.opened_at for o in done[:rounds]]
    finally:
        await runner.cleanup()


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    times: dict[str, list[float]] = {"plain": [], "secure": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for kind in ("plain", "secure"):
                times[kind] += await measure(
                    args.workers,
                    args.features,
                    args.rounds,
                    secure=kind == "secure",
                    workdir=Path(tmp),
                )
    plain, secure = _spread(times["plain"]), _spread(times["secure"])
    return {
        "workers": args.workers,
        "d": args.features + 1,
        "rounds_each": len(times["plain"]),
        "plain_round_s": plain,
        "secure_round_s": secure,
        "secure_vs_plain_round_s": secure["median"] / plain["median"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for kind in ("plain", "secure"):
        s = result[f"{kind}_round_s"]
        print(
            f"{kind:6} n = {args.workers}, d = {result['d']}: round {s['median']:.3f} s "
            f"(min {s['min']:.3f}, max {s['max']:.3f}) over {result['rounds_each']} rounds"
        )
    print(f"secure / plain (medians): {result['secure_vs_plain_round_s']:.2f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
