"""The cluster's Redis parts, measured against a real redis-server on loopback.

(a) Leader failover: a leader process holding a task's lease (``dandelion.cluster.Leadership``)
    is killed with SIGKILL; the time from the kill to the moment a standby in this process is
    elected, over ``--repeats`` kills, for each lease period (``--ttls``). The bound is one lease
    period plus one retry period (a third of it).
(b) Redis load per operation a shard makes: assignment slots taken (``RoundCounters.take_slot``),
    report counts added (``add_reports``, once per group commit) and lease renewals, as
    operations per second from ``--clients`` concurrent connections, each awaiting its answer
    (so the figure is latency-bound, as a shard's own calls are).
(c) Redis's own capacity for the same scripts: ``redis-benchmark`` (Debian's redis-tools, beside
    redis-server) running the assignment script with 50 connections and 16 commands pipelined,
    so that the server, not a client, is the limit: what one Redis can take from many shards.

    python benchmarks/cluster_redis.py --json

With ``--json`` the last line is one JSON object: ``failover_s_ttl<ms>`` (median) with
``_min``/``_max``, and ``<op>_per_s_c<clients>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dandelion.cluster import LeaderLease, Leadership, RoundCounters, connect  # noqa: E402
from dandelion.cluster.budget import _TAKE  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402

LEADER = """
import asyncio, sys
from dandelion.cluster import Leadership, LeaderLease, connect

async def main(url, task, ttl):
    client = await connect(url)
    async def elected(epoch):
        print("elected", epoch, flush=True)
    async def lost():
        pass
    Leadership(LeaderLease(client, task, "leader", ttl_ms=ttl), elected, lost).start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def failover(url: str, task: str, ttl_ms: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER, url, task, str(ttl_ms)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.startswith("elected"), line
    client = await connect(url)
    elected = asyncio.Event()

    async def on_elected(epoch: int) -> None:
        elected.set()

    async def on_lost() -> None:
        pass

    standby = Leadership(LeaderLease(client, task, "standby", ttl_ms=ttl_ms), on_elected, on_lost)
    standby.start()
    await asyncio.sleep(ttl_ms / 1000 / 2)  # the standby has tried and lost at least once
    assert not elected.is_set()
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    await elected.wait()
    took = time.monotonic() - killed
    await standby.stop()
    await client.aclose()
    proc.wait()
    proc.stdout.close()
    return took


async def ops_per_s(url: str, op: str, clients: int, seconds: float) -> float:
    conns = [await connect(url) for _ in range(clients)]
    done = 0

    async def one(c: Any, i: int) -> None:
        nonlocal done
        counters = RoundCounters(c, "bench", i, expire_ms=60_000)
        lease = LeaderLease(c, f"bench{i}", f"h{i}", ttl_ms=60_000)
        await lease.try_acquire()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if op == "take_slot":
                await counters.take_slot(10**12)
            elif op == "add_reports":
                await counters.add_reports(1)
            else:
                await lease.renew()
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(one(c, i) for i, c in enumerate(conns)))
    rate = done / (time.monotonic() - started)
    for c in conns:
        await c.aclose()
    return rate


def redis_capacity(url: str) -> float:
    port = url.rsplit(":", 1)[1].split("/")[0]
    script = " ".join(_TAKE.split())
    result = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            port,
            "-c",
            "50",
            "-P",
            "16",
            "-n",
            "200000",
            "-q",
            "EVAL",
            script,
            "1",
            "bench:capacity",
            "1000000000000",
            "60000",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # "EVAL ...: 123456.79 requests per second, p50=..." (the last figure line)
    line = [
        x for x in result.stdout.replace("\r", "\n").splitlines() if "requests per second" in x
    ][-1]
    return float(line.split("requests per second")[0].split(":")[-1].strip())


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ttls", default="1000,3000", help="lease periods in ms, comma-separated")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--clients", default="1,4", help="concurrent connections, comma-separated")
    ap.add_argument("--seconds", type=float, default=2.0, help="per operation rate measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        for ttl in (int(x) for x in args.ttls.split(",")):
            times = [await failover(url, f"t{ttl}_{i}", ttl) for i in range(args.repeats)]
            med = statistics.median(times)
            out[f"failover_s_ttl{ttl}"] = round(med, 3)
            out[f"failover_s_ttl{ttl}_min"] = round(min(times), 3)
            out[f"failover_s_ttl{ttl}_max"] = round(max(times), 3)
            print(
                f"failover, lease {ttl} ms: median {med:.3f} s (min {min(times):.3f}, max "
                f"{max(times):.3f}, {args.repeats} SIGKILLs; bound {ttl * 4 / 3000:.3f} s)",
                file=sys.stderr,
            )
        for op in ("take_slot", "add_reports", "renew"):
            for c in (int(x) for x in args.clients.split(",")):
                rates = [await ops_per_s(url, op, c, args.seconds) for _ in range(3)]
                med = statistics.median(rates)
                out[f"{op}_per_s_c{c}"] = round(med)
                print(
                    f"{op}: {med:,.0f}/s from {c} connection(s) (min {min(rates):,.0f}, max "
                    f"{max(rates):,.0f}, 3 runs of {args.seconds} s)",
                    file=sys.stderr,
                )
        rates = [redis_capacity(url) for _ in range(3)]
        med = statistics.median(rates)
        out["take_slot_server_capacity_per_s"] = round(med)
        print(
            f"take_slot, redis-server's own capacity: {med:,.0f}/s (min {min(rates):,.0f}, "
            f"max {max(rates):,.0f}; redis-benchmark -c 50 -P 16, 3 runs of 200,000)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
