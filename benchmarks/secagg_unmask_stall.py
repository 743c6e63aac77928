"""How long a secure round's unmasking holds the coordinator's event loop: in place (as before)
and on the unmasking thread (``dandelion/coordinator/secure_conductor.py``), alternately, in one
run.

One SecAgg+ round of n participants at dimension d runs in process (``SecAggServer`` and n
``SecAggClient`` on the ``cryptography`` host and numpy) up to its last reveal, with 10 % of
the participants gone before their masked vector (their s keys are rebuilt). Then, ``--repeats``
times for each kind, a copy of that server takes the last reveal, which closes the unmask phase
and runs the unmasking, while a probe on the same loop wakes every millisecond; the loop's
longest stall is the probe's longest gap. It prints both kinds' median and spread, the ratio of
the medians (``stall_thread_vs_in_place``) and checks that both sums agree.

    python benchmarks/secagg_unmask_stall.py [--n 200] [--d 100000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dandelion.coordinator.secure_conductor import _run_to_end
from dandelion.crypto import CryptographyHost, NumpyMod32
from dandelion.protocol.secagg import SecAggParams
from dandelion.protocol.secagg.client import ClientState, SecAggClient
from dandelion.protocol.secagg.messages import SecAggMessage
from dandelion.protocol.secagg.server import Phase, SecAggServer
from dandelion.protocol.secagg.unmasking import in_place

__all__ = ["prepare", "stall"]


async def prepare(n: int, d: int) -> tuple[SecAggServer, int, SecAggMessage]:
    """A server with every reveal but one taken, the one held back and its sender."""
    host, rng = CryptographyHost(), random.Random(1)
    params = SecAggParams.choose(n, d, 1.0)
    server = SecAggServer(params, "bench", 1, host, 0.0, ops=NumpyMod32())
    clients = {i: SecAggClient(host, NumpyMod32()) for i in range(1, n + 1)}
    gone = set(rng.sample(sorted(clients), n // 10))
    held: tuple[int, SecAggMessage] | None = None
    for phase in (Phase.ADVERTISE, Phase.SHARE, Phase.MASKED, Phase.UNMASK):
        assert server.phase is phase, server.abandon_reason
        replies: list[tuple[int, SecAggMessage, bytes | None]] = []
        for i, msg in server.take_outbox():
            if phase is Phase.MASKED and i in gone:
                continue  # left before its masked vector
            client = clients[i]
            replies += [(i, out, None) for out in await client.receive(msg)]
            if client.state is ClientState.RELAYED:
                masked, frame = await client.mask([rng.uniform(-1, 1) for _ in range(d)])
                replies.append((i, masked, frame))
        if phase is Phase.UNMASK:
            *replies, (last, reveal, _none) = replies
            held = (last, reveal)
        for i, msg, frame in replies:
            await server.receive(i, msg, 0.0, frame)
        if phase is Phase.MASKED:
            await server.tick(server.deadline)  # the gone ones: the phase closes at its deadline
    assert held is not None
    assert server.phase is Phase.UNMASK
    return server, *held


async def stall(
    prepared: tuple[SecAggServer, int, SecAggMessage], pool: ThreadPoolExecutor | None
) -> tuple[float, float, bytes]:
    """(longest stall of the loop, unmasking time, the unmasked sum) of one unmasking."""
    base, last, reveal = prepared
    server = copy.deepcopy(base)
    if pool is not None:
        loop = asyncio.get_running_loop()

        async def offload(work: Any) -> bytearray:
            return await loop.run_in_executor(pool, _run_to_end, work)

        server._offload = offload
    else:
        server._offload = in_place
    longest, done = 0.0, False

    async def probe() -> None:
        nonlocal longest
        before = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - before - 0.001)
            before = now

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await server.receive(last, reveal, 0.0)
    took = time.perf_counter() - start
    done = True
    await prober
    assert server.phase is Phase.DONE, server.abandon_reason
    assert server.result is not None
    return longest, took, server.result


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prepared = await prepare(args.n, args.d)
    pool = ThreadPoolExecutor(1, thread_name_prefix="dandelion-unmask")
    stalls: dict[str, list[float]] = {"in_place": [], "thread": []}
    times: dict[str, list[float]] = {"in_place": [], "thread": []}
    sums = set()
    for _ in range(args.repeats):
        for kind in ("in_place", "thread"):
            longest, took, result = await stall(prepared, pool if kind == "thread" else None)
            stalls[kind].append(longest)
            times[kind].append(took)
            sums.add(result)
    pool.shutdown()
    assert len(sums) == 1, "the two kinds disagree on the sum"
    out = {
        "n": args.n,
        "d": args.d,
        "repeats": args.repeats,
        "stall_s": {k: _spread(v) for k, v in stalls.items()},
        "unmask_s": {k: _spread(v) for k, v in times.items()},
        "stall_thread_vs_in_place": statistics.median(stalls["thread"])
        / statistics.median(stalls["in_place"]),
    }
    for kind in ("in_place", "thread"):
        s, t = out["stall_s"][kind], out["unmask_s"][kind]
        print(
            f"{kind:9} longest loop stall {s['median'] * 1e3:8.1f} ms "
            f"({s['min'] * 1e3:.1f}-{s['max'] * 1e3:.1f}); unmasking {t['median']:.2f} s "
            f"({t['min']:.2f}-{t['max']:.2f})"
        )
    print(f"stall, thread / in place: {out['stall_thread_vs_in_place']:.4f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
