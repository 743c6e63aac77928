"""Secure aggregation (SecAgg+) in CPython: per-client time and bytes, and the coordinator's
time beside plain aggregation of the same updates, measured in one run.

Every participant is a real :class:`SecAggClient` on the CPython crypto host
(``cryptography``; numpy for the mod-2^32 vector operations) and the coordinator a real
:class:`SecAggServer` whose masked sum is :class:`SecureAggregate`, joined in process: every
message goes through its JSON text and every masked vector through its tensor frame. 10 % of
the participants drop out, spread over the four phases (advertise, share, masked input,
unmask), so the run rebuilds dropped participants' mask keys.

- Per client: the CPU time of its own code (``receive`` and ``mask``, encoding the update
  included; process CPU time, so machine load does not count) and the bytes it sends and
  receives, over the participants that took part in every phase: median, fastest, slowest.
- The coordinator: the CPU time in ``receive`` and ``tick``, and beside it, in the same run,
  the plain path's time for the same summed updates (``StreamingSum.add``: decode, norm,
  clip, add); ``coordinator_vs_plain`` is the first over the second. Median, fastest and
  slowest of ``--repeats`` rounds (one round at n = 1,000, d = 100,000, whose client side
  alone takes a minute of CPU).

Not here yet: the browser (Pyodide, WebCrypto) and Flower's SecAgg+ side by side.

    python benchmarks/secagg_vs_plain.py [--quick] [--json] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dandelion.aggregation import SecureAggregate, StreamingSum, single_threaded_blas
from dandelion.crypto import CryptographyHost, NumpyMod32
from dandelion.protocol.secagg import SecAggParams
from dandelion.protocol.secagg.client import ClientState, SecAggClient
from dandelion.protocol.secagg.messages import SecAggMessage, encode_secagg, parse_secagg
from dandelion.protocol.secagg.server import Phase, SecAggServer

__all__ = ["measure_round"]

PHASES = (Phase.ADVERTISE, Phase.SHARE, Phase.MASKED, Phase.UNMASK)
CLIP = 1.0


def _dropouts(n: int, rate: float, rng: random.Random) -> dict[Phase, set[int]]:
    """rate * n participants, dealt round-robin to the four phases."""
    chosen = rng.sample(range(1, n + 1), round(rate * n))
    return {p: set(chosen[k :: len(PHASES)]) for k, p in enumerate(PHASES)}


async def measure_round(n: int, d: int, *, dropout: float = 0.1, seed: int = 1) -> dict[str, Any]:
    host, ops = CryptographyHost(), NumpyMod32()
    rng = random.Random(seed)
    params = SecAggParams.choose(n, d, CLIP)
    aggregate = SecureAggregate(d, params.scale_bits)
    server_s = 0.0
    t0 = time.process_time()
    server = SecAggServer(params, "bench", 1, host, 0.0, ops=ops, sink=aggregate)
    server_s += time.process_time() - t0
    clients = {i: SecAggClient(host, ops) for i in range(1, n + 1)}
    client_s = dict.fromkeys(clients, 0.0)
    sent = dict.fromkeys(clients, 0)
    received = dict.fromkeys(clients, 0)
    drops = _dropouts(n, dropout, rng)
    gone: set[int] = set()
    updates = np.random.default_rng(seed)
    plain = StreamingSum(d)
    plain_s = 0.0
    now = 0.0
    for phase in PHASES:
        if server.finished:
            break
        gone |= drops[phase]
        replies: list[tuple[int, SecAggMessage, bytes | None]] = []
        for i, msg in server.take_outbox():
            text = encode_secagg(msg)
            received[i] += len(text)
            if i in gone:
                continue
            client = clients[i]
            t0 = time.process_time()
            out = await client.receive(parse_secagg(text))
            client_s[i] += time.process_time() - t0
            replies.extend((i, reply, None) for reply in out)
            if client.state is ClientState.RELAYED:
                update = updates.uniform(-CLIP / d**0.5, CLIP / d**0.5, d)
                values = update.tolist()
                t0 = time.process_time()
                masked, frame = await client.mask(values)
                client_s[i] += time.process_time() - t0
                replies.append((i, masked, frame))
                # The plain path's work for the same update, timed apart.
                payload = update.astype("<f4").tobytes()
                t0 = time.process_time()
                plain.add(np.frombuffer(payload, dtype="<f4"), weight=1.0, bound=CLIP)
                plain_s += time.process_time() - t0
        for i, msg, frame in replies:
            text = encode_secagg(msg)
            sent[i] += len(text) + (len(frame) if frame is not None else 0)
            parsed = parse_secagg(text)
            t0 = time.process_time()
            await server.receive(i, parsed, now, frame)
            server_s += time.process_time() - t0
        if server.phase is phase:
            now = server.deadline
            t0 = time.process_time()
            await server.tick(now)
            server_s += time.process_time() - t0
    for i, msg in server.take_outbox():
        received[i] += len(encode_secagg(msg))
    if server.phase is not Phase.DONE:
        raise RuntimeError(f"the round was abandoned: {server.abandon_reason}")
    # The plain sum saw every update that reached the masked phase, the secure sum the
    # survivors of it: compare times per summed update.
    summed = aggregate.count
    # Per-client figures over those that took part in every phase.
    active = [i for i in clients if i not in gone]
    times = sorted(client_s[i] for i in active)
    plain_per_update = plain_s / max(plain.count, 1)
    # Both paths summed the same updates: the secure sum is the plain one up to the
    # fixed-point rounding (n * 2^-(f+1)) and float32's.
    if plain.count != summed:
        raise RuntimeError(f"the plain path summed {plain.count} updates, the secure {summed}")
    step = summed * 2.0 ** -(params.scale_bits + 1)
    worst = float(np.max(np.abs(aggregate.sum.astype(np.float64) - plain.sum)))
    if worst > step + 1e-4:
        raise RuntimeError(f"secure and plain sums differ by {worst} (rounding allows {step})")
    return {
        "n": n,
        "d": d,
        "degree": params.degree,
        "threshold": params.threshold,
        "dropped": sum(len(s) for s in drops.values()),
        "summed": summed,
        "client_s_median": statistics.median(times),
        "client_s_min": times[0],
        "client_s_max": times[-1],
        "client_bytes_sent_median": statistics.median(sent[i] for i in active),
        "client_bytes_received_median": statistics.median(received[i] for i in active),
        "coordinator_s": server_s,
        "plain_s": plain_per_update * summed,
        "coordinator_vs_plain": server_s / (plain_per_update * summed),
        "sum_max_abs_diff": worst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 100 only")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per size (spread)")
    args = parser.parse_args()
    single_threaded_blas()
    asyncio.run(measure_round(20, 100))  # warm-up: the crypto backend's first calls
    grid = [(100, 1000), (100, 100_000)]
    if not args.quick:
        grid += [(1000, 1000), (1000, 100_000)]
    summary: dict[str, Any] = {}
    for n, d in grid:
        repeats = 1 if n * d > 10**7 else args.repeats
        runs = [asyncio.run(measure_round(n, d, seed=r + 1)) for r in range(repeats)]
        result = runs[len(runs) // 2] if len(runs) > 2 else runs[0]
        ratios = sorted(r["coordinator_vs_plain"] for r in runs)
        coord = sorted(r["coordinator_s"] for r in runs)
        result = {**result, "coordinator_s": statistics.median(coord)}
        result["coordinator_vs_plain"] = statistics.median(ratios)
        print(
            f"n={n:5d} d={d:7d} k={result['degree']} t={result['threshold']} "
            f"dropped={result['dropped']} summed={result['summed']}: client "
            f"{result['client_s_median'] * 1e3:.1f} ms median "
            f"[{result['client_s_min'] * 1e3:.1f}, {result['client_s_max'] * 1e3:.1f}], sends "
            f"{result['client_bytes_sent_median'] / 1e3:.1f} kB, receives "
            f"{result['client_bytes_received_median'] / 1e3:.1f} kB; coordinator "
            f"{result['coordinator_s']:.2f} s [{coord[0]:.2f}, {coord[-1]:.2f}] = "
            f"{result['coordinator_vs_plain']:.1f}x plain [{ratios[0]:.1f}, {ratios[-1]:.1f}] "
            f"over {len(runs)} rounds",
            flush=True,
        )
        key = f"n{n}_d{d}"
        summary[f"client_s_cpython_{key}"] = round(result["client_s_median"], 4)
        summary[f"client_s_cpython_max_{key}"] = round(result["client_s_max"], 4)
        summary[f"client_bytes_sent_{key}"] = int(result["client_bytes_sent_median"])
        summary[f"client_bytes_received_{key}"] = int(result["client_bytes_received_median"])
        summary[f"coordinator_s_{key}"] = round(result["coordinator_s"], 4)
        summary[f"coordinator_vs_plain_{key}"] = round(result["coordinator_vs_plain"], 1)
        summary[f"coordinator_vs_plain_min_{key}"] = round(ratios[0], 1)
        summary[f"coordinator_vs_plain_max_{key}"] = round(ratios[-1], 1)
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
