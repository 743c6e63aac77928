"""``dandelion serve --cluster``, measured: the leader's failover and the leader's merge.

(a) Leader failover: K real ``serve --cluster`` shard processes on one PostgreSQL and one
    redis-server (both started by the script in temporary folders, on loopback). The leader of
    the task is killed with SIGKILL ``--kills`` times (and started again after each); the figure
    is the time from the kill to another shard holding the task's lease, read from Redis. The
    bound is one lease period plus one retry period (a third of it).
(b) The leader's merge: ``K`` partial aggregates of ``d`` float32 values, each in its
    checkpoint's byte form, decoded (``Aggregate.from_bytes``) and merged into one — what the
    leader does with the shards' checkpoints at each close — for each K of ``--ks`` and d of
    ``--ds``, the median of ``--repeats``.

    python benchmarks/cluster_serve.py --json

With ``--json`` the last line is one JSON object: ``leader_failover_s`` (median) with
``leader_failover_s_min``/``_max`` and ``lease_s``, and ``merge_s_k<K>_d<d>``.
"""

from __future__ import annotations

import argparse
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dandelion.aggregation import Aggregate, Contribution  # noqa: E402
from tests.conftest import free_port, toy_task_file  # noqa: E402
from tests.pg_server import PostgresServer  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402

TASK = toy_task_file({"goal": 6, "min_reports": 2, "over_selection": 1.5, "deadline_s": 600.0})


class _Shard:
    def __init__(self, folder: Path, n: int, db: str, cluster: str, lease_s: float) -> None:
        self.port = free_port()
        self.log = folder / f"shard{n}.log"
        task = folder / "task.toml"
        task.write_text(TASK)
        self.cmd = [
            sys.executable,
            "-m",
            "dandelion.cli",
            "serve",
            *("--db", db, "--cluster", cluster, "--leader-lease-s", str(lease_s)),
            *("--port", str(self.port), "--task", str(task), "--monitor-k", "2"),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while b"coordinator on" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shard did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _holder_pid(client: Any) -> int | None:
    raw = client.get("dandelion:leader:t1")
    return None if raw is None else int(raw.decode().partition(":")[2].rsplit("-", 2)[1])


def failover(k: int, kills: int, lease_s: float) -> list[float]:
    import redis

    out: list[float] = []
    pg = PostgresServer(free_port())
    pg.start()
    folder = Path(tempfile.mkdtemp(prefix="dandelion-bench-cluster-"))
    try:
        with redis_server(folder) as url:
            client = redis.Redis.from_url(url)
            shards = [_Shard(folder, n, pg.database(), url, lease_s) for n in range(k)]
            try:
                shards[0].start()  # it creates the task; the others find it
                for shard in shards[1:]:
                    shard.start()
                for _ in range(kills):
                    while (pid := _holder_pid(client)) is None:
                        time.sleep(0.01)
                    time.sleep(lease_s / 2)  # somewhere in the leader's renewal period
                    victim = next(s for s in shards if s.proc and s.proc.pid == pid)
                    assert victim.proc is not None
                    os.kill(pid, signal.SIGKILL)
                    killed = time.monotonic()
                    victim.proc.wait()
                    while _holder_pid(client) in (None, pid):
                        time.sleep(0.005)
                    out.append(time.monotonic() - killed)
                    victim.start()
            finally:
                for shard in shards:
                    shard.stop()
    finally:
        pg.stop()
    return out


def merge_seconds(k: int, d: int, repeats: int) -> float:
    """The median time to decode and merge ``k`` checkpoints of ``d`` values into one."""
    rng = np.random.default_rng(7)
    blobs = []
    for _ in range(k):
        part = Aggregate(d)
        for _ in range(2):  # a checkpoint is a sum of at least k = 2 updates
            part.add(rng.standard_normal(d).astype(np.float32), Contribution(1.0, 0), 1e9)
        blobs.append(part.to_bytes())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        merged = Aggregate(d)
        for blob in blobs:
            merged.merge(Aggregate.from_bytes(blob))
        times.append(time.perf_counter() - start)
        assert merged.count == 2 * k
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease-s", type=float, default=1.0)
    parser.add_argument("--ks", default="2,3,8,32")
    parser.add_argument("--ds", default="1000,100000")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"shards": args.shards, "lease_s": args.lease_s}
    if args.kills:
        times = failover(args.shards, args.kills, args.lease_s)
        result["leader_failover_s"] = round(statistics.median(times), 3)
        result["leader_failover_s_min"] = round(min(times), 3)
        result["leader_failover_s_max"] = round(max(times), 3)
        print(f"leader failover, lease {args.lease_s} s: {[round(t, 3) for t in times]} s")
    for d in (int(x) for x in args.ds.split(",")):
        for k in (int(x) for x in args.ks.split(",")):
            seconds = merge_seconds(k, d, args.repeats)
            result[f"merge_s_k{k}_d{d}"] = round(seconds, 6)
            print(f"merge of {k} checkpoints, d = {d:,}: {seconds * 1000:.3f} ms")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
