"""A cluster against one shard: ingest, open connections and leader failover, in one run.

Real ``dandelion serve --cluster`` shard processes on one PostgreSQL and redis-server (both
started by the script in temporary folders, on loopback), two clusters side by side: one of
1 shard and one of 2 shards, each with its own database and its own redis-server.

(a) Ingest: the workload of ``benchmarks/ingest.py`` (its task file, its messages from
    ``ingest_rounds``): ``--clients`` connections, each going through whole rounds — check-in,
    the task message and the model frame, the update (a text message and a d-float32 frame),
    the answer — every client once a round. On the 1-shard cluster every client talks to its
    one shard; on the 2-shard cluster the clients are spread over the two shards' ports
    (client i on shard i mod 2). A shard acknowledges reports a checkpoint of at least k at a
    time and the leader closes the round on the cluster's count of acknowledged reports, so
    the round's goal is short of the clients by each shard's possible tail (k - 1 a shard)
    and over-selects them all: the reports past the goal are refused at the close, as
    over-selection's are. The figure is acknowledged updates per second over whole rounds
    (check-in → answer, the leader's open and close inside). The two clusters run in
    interleaved blocks of ``--block-rounds`` rounds (1, 2; then 2, 1; …), ``--repeats`` pairs:
    each pair gives one ratio; ``ingest_2_vs_1`` is the median, with quartiles and extremes.
(b) Connections: every shard process runs with an open-files limit of ``--fd-limit`` (its
    ``RLIMIT_NOFILE``, the bound a deployment sets; the machine's own is 20,000). Idle
    authenticated worker connections (hello → welcome) are opened in batches of
    ``--batch`` until each shard refuses (a handshake fails or times out), then held for
    ``--hold-s`` seconds and pinged; ``connections_2_vs_1`` is the connections answering the
    ping, 2 shards over 1. Each shard's resident memory before and after the ramp gives the
    memory per connection.
(c) Leader failover: ``benchmarks/cluster_serve.py``'s measurement (imported), ``--kills``
    SIGKILLs of the leader among 2 shards at a ``--lease-s`` lease.

The clients run in this process, on the same cores as the shards, and the machine is shared:
the load average (1 min) is read at the start, between blocks and at the end, and reported.

    python benchmarks/cluster.py --json

With ``--json`` the last line is one JSON object with ``ingest_2_vs_1`` (and
``ingest_2_vs_1_spread``, ``ingest_updates_per_s_1``/``_2``), ``connections_2_vs_1`` (and
``connections_1``, ``connections_2``, ``kb_per_connection``, ``fd_limit``),
``leader_failover_s`` (with ``_min``/``_max``) and ``load_average``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cluster_serve import failover  # noqa: E402
from benchmarks.ingest import _task_file, _wait_healthy  # noqa: E402
from benchmarks.ingest_rounds import _CHECKIN, _hello, _update  # noqa: E402
from benchmarks.paired import pair_order, paired_ratios, spread  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.pg_server import PostgresServer  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402


class Workers:
    """``clients`` connections, client ``i`` to ``urls[i % len(urls)]``, each going through
    ``ingest_rounds``' whole round: check-in (``come_back`` and a retry while no round has a
    slot), the task message and the model frame, the update, the answer. The round
    over-selects (its goal is below the clients), so an update the round no longer needs is
    refused when the goal closes it; only acknowledged updates are counted."""

    def __init__(self, urls: list[str], clients: int, d: int, first_id: int) -> None:
        self.urls, self.clients, self.first_id = urls, clients, first_id
        rng = np.random.default_rng(0)
        self._payloads = [rng.normal(size=d).astype("<f4") for _ in range(4)]
        self._conns: list[Any] = []
        self.refused: Counter[str] = Counter()

    async def connect(self) -> None:
        async def one(i: int) -> Any:
            url = self.urls[i % len(self.urls)]
            # No client keepalive: a client waiting for its ack is not a dead server.
            ws = await websockets.connect(url, compression=None, max_size=2**26, ping_interval=None)
            await ws.send(_hello(self.first_id + i))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "welcome", reply
            return ws

        self._conns = list(await asyncio.gather(*(one(i) for i in range(self.clients))))

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._conns))

    async def _conversation(self, i: int, ws: Any) -> bool:
        while True:
            await ws.send(_CHECKIN)
            msg = json.loads(await ws.recv())
            if msg["type"] == "task":
                await ws.recv()  # the model frame
                break
            assert msg["type"] == "come_back", msg
            await asyncio.sleep(msg["retry_window"]["min_s"])
        values = self._payloads[i % len(self._payloads)]
        text, frame = _update(msg["task"], msg["round"], msg["nonce"], values)
        await ws.send(text)
        await ws.send(frame)
        reply = json.loads(await ws.recv())
        # Refused once the goal closed the round: a reject (stale), or, when its shard's
        # checkpoint lost the race with the leader's seal, a non-fatal error (nothing stored).
        assert reply["type"] in ("ack", "reject") or reply.get("fatal") is False, reply
        if reply["type"] != "ack":
            self.refused[reply.get("reason") or reply.get("code") or "?"] += 1
        return bool(reply["type"] == "ack")

    async def run(self, rounds: int, timeout: float) -> tuple[int, float]:
        """``rounds`` conversations of every client, each round waiting for all of them; the
        acknowledged updates and the wall seconds."""
        acked, start = 0, time.perf_counter()
        for _ in range(rounds):
            answers = await asyncio.wait_for(
                asyncio.gather(*(self._conversation(i, ws) for i, ws in enumerate(self._conns))),
                timeout,
            )
            acked += sum(answers)
        return acked, time.perf_counter() - start


class Cluster:
    """``shards`` shard processes of task ``bench`` on database ``db`` and redis ``redis_url``,
    each with an open-files limit of ``fd_limit``."""

    def __init__(
        self, folder: Path, shards: int, db: str, redis_url: str, opts: argparse.Namespace
    ) -> None:
        self.folder, self.db, self.redis_url, self.opts = folder, db, redis_url, opts
        self.k = max(2, min(10, opts.clients // 4))
        self.task = _task_file(folder, opts.d, opts.clients)
        # A shard's first checkpoint waits for the round's minimum among its own reports: with
        # ingest.py's minimum (every client) a shard holding half the clients would never
        # checkpoint, so the minimum here is one checkpoint's k.
        # The goal leaves room for each shard's last reports short of k (refused at the close,
        # as over-selection's are): without it a shard's tail would wait for the deadline.
        text = self.task.read_text().replace(
            f"min_reports = {opts.clients}", f"min_reports = {self.k}"
        )
        text = text.replace(f"goal = {opts.clients}", f"goal = {goal(opts.clients, self.k)}")
        text = text.replace("over_selection = 1.0", "over_selection = 2.0")
        self.task.write_text(text)
        self.ports = [free_port() for _ in range(shards)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def _command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "dandelion", "serve", "--port", str(port)]
        cmd += ["--db", self.db, "--cluster", self.redis_url, "--task", str(self.task)]
        cmd += ["--tick-s", "0.01", "--pace-min-s", "0.005", "--pace-max-s", "0.05"]
        cmd += ["--log-level", "WARNING", "--monitor-k", str(self.k)]
        cmd += ["--max-handshakes-per-address", "100000"]
        cmd += ["--max-connections-per-address", "100000", "--hello-timeout-s", "60"]
        return cmd

    async def start(self) -> None:
        limit = self.opts.fd_limit

        def bound() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        for n, port in enumerate(self.ports):
            log = (self.folder / f"shard{n}.log").open("ab")
            proc = subprocess.Popen(
                self._command(port), cwd=ROOT, stdout=log, stderr=log, preexec_fn=bound
            )
            self.procs.append(proc)
            await _wait_healthy(port, proc)  # the first creates the task; the others find it

    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/ws" for port in self.ports]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if proc.poll() is None:
                proc.kill()


def goal(clients: int, k: int) -> int:
    """A round's goal for ``clients`` workers on up to 2 shards checkpointing ``k`` at a time:
    short of the clients by each shard's largest tail (k - 1)."""
    return max(k, clients - 2 * (k - 1))


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` now (VmRSS), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def load() -> float:
    return round(os.getloadavg()[0], 2)


async def measure_ingest(
    clusters: dict[int, Cluster], opts: argparse.Namespace, loads: list[float]
) -> dict[str, Any]:
    sides: dict[int, Workers] = {}
    for k, cluster in clusters.items():
        sides[k] = Workers(cluster.urls(), opts.clients, opts.d, first_id=100_000 * k)
        await sides[k].connect()
    for side in sides.values():  # one untimed round a side: first buffers, first checkpoint
        await side.run(1, opts.round_timeout_s)
    rates: dict[int, list[float]] = {1: [], 2: []}
    acked = {1: 0, 2: 0}
    for rep in range(opts.repeats):
        for index in pair_order(rep):
            k = (1, 2)[index]
            n, wall = await sides[k].run(opts.block_rounds, opts.round_timeout_s)
            rates[k].append(n / wall)
            acked[k] += n
            loads.append(load())
    for side in sides.values():
        await side.close()
    ratio = paired_ratios(rates[2], rates[1])
    return {
        "ingest_2_vs_1": ratio["median"],
        "ingest_2_vs_1_spread": ratio,
        "ingest_updates_per_s_1": spread(rates[1], 1),
        "ingest_updates_per_s_2": spread(rates[2], 1),
        "ingest_acked": acked,
        "ingest_goal": goal(opts.clients, clusters[1].k),
        "ingest_refused": {k: dict(side.refused) for k, side in sides.items()},
    }


async def _open(url: str, worker: int, timeout: float) -> Any:
    ws = await websockets.connect(
        url, compression=None, open_timeout=timeout, ping_interval=None, close_timeout=1
    )
    try:
        await ws.send(_hello(worker))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except BaseException:
        await ws.close()
        raise
    if reply["type"] != "welcome":
        await ws.close()
        raise RuntimeError(f"refused: {reply}")
    return ws


async def ramp(cluster: Cluster, opts: argparse.Namespace, first_id: int) -> dict[str, Any]:
    """Idle authenticated connections to every shard of ``cluster`` until each refuses."""
    urls = cluster.urls()
    held: list[list[Any]] = [[] for _ in urls]
    full = [False] * len(urls)
    before = [rss_mb(p.pid) for p in cluster.procs]
    worker = first_id
    attempts = 0
    while not all(full) and attempts < opts.max_attempts:
        batch: list[tuple[int, int]] = []
        for _ in range(opts.batch):
            for s in range(len(urls)):
                if not full[s]:
                    batch.append((s, worker))
                    worker += 1
        attempts += len(batch)
        results = await asyncio.gather(
            *(_open(urls[s], w, opts.open_timeout_s) for s, w in batch), return_exceptions=True
        )
        for (s, _), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                full[s] = True
            else:
                held[s].append(result)
    await asyncio.sleep(opts.hold_s)
    after = [rss_mb(p.pid) for p in cluster.procs]
    alive = 0
    for conns in held:
        pongs = await asyncio.gather(
            *(_pong(ws, opts.open_timeout_s) for ws in conns), return_exceptions=True
        )
        alive += sum(1 for p in pongs if p is True)
    opened = sum(len(c) for c in held)
    for conns in held:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    per_conn = [1024 * (a - b) / len(c) for a, b, c in zip(after, before, held, strict=True) if c]
    return {
        "alive": alive,
        "opened": opened,
        "per_shard": [len(c) for c in held],
        "refused": all(full),
        "kb_per_connection": round(statistics.mean(per_conn), 1) if per_conn else 0.0,
    }


async def _pong(ws: Any, timeout: float) -> bool:
    waiter = await ws.ping()
    await asyncio.wait_for(waiter, timeout)
    return True


async def run_clusters(
    folder: Path, pg: PostgresServer, opts: argparse.Namespace
) -> dict[str, Any]:
    loads = [load()]
    for name in ("r1", "r2"):
        (folder / name).mkdir()
    with redis_server(folder / "r1") as r1, redis_server(folder / "r2") as r2:
        clusters: dict[int, Cluster] = {}
        try:
            for k, url in ((1, r1), (2, r2)):
                sub = folder / f"c{k}"
                sub.mkdir()
                clusters[k] = Cluster(sub, k, pg.database(), url, opts)
                await clusters[k].start()
            result = await measure_ingest(clusters, opts, loads)
            ramps = {}
            for k in (1, 2):
                ramps[k] = await ramp(clusters[k], opts, first_id=1_000_000 * k)
                loads.append(load())
        finally:
            for cluster in clusters.values():
                cluster.stop()
    result.update(
        connections_2_vs_1=round(ramps[2]["alive"] / max(1, ramps[1]["alive"]), 3),
        connections_1=ramps[1],
        connections_2=ramps[2],
        kb_per_connection=ramps[1]["kb_per_connection"],
        fd_limit=opts.fd_limit,
    )
    result["load_average"] = loads
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="ingest clients [100]")
    parser.add_argument("--d", type=int, default=100_000, help="model size [100,000]")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of blocks [5]")
    parser.add_argument("--block-rounds", type=int, default=4, help="rounds per block [4]")
    parser.add_argument("--round-timeout-s", type=float, default=120.0)
    parser.add_argument("--fd-limit", type=int, default=4096, help="each shard's [4096]")
    parser.add_argument("--batch", type=int, default=200, help="connections per step [200]")
    parser.add_argument("--max-attempts", type=int, default=20_000)
    parser.add_argument("--open-timeout-s", type=float, default=5.0)
    parser.add_argument("--hold-s", type=float, default=2.0)
    parser.add_argument("--kills", type=int, default=3, help="leader kills [3]")
    parser.add_argument("--lease-s", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    if opts.repeats < 2:
        parser.error("--repeats must be at least 2 (a spread needs more than one pair)")
    # The clients hold up to 3 x fd_limit connections at once (two shards full, the ramp's
    # last batch): raise this process's own soft limit to its hard one.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result: dict[str, Any] = {"clients": opts.clients, "d": opts.d, "cores": os.cpu_count()}
    pg = PostgresServer(free_port())
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dandelion-bench-cluster-") as tmp:
            result.update(asyncio.run(run_clusters(Path(tmp), pg, opts)))
    finally:
        pg.stop()
    times = failover(2, opts.kills, opts.lease_s)
    result["leader_failover_s"] = round(statistics.median(times), 3)
    result["leader_failover_s_min"] = round(min(times), 3)
    result["leader_failover_s_max"] = round(max(times), 3)
    result["lease_s"] = opts.lease_s
    result["load_average"].append(load())
    print(
        f"ingest 2 vs 1 shard: {result['ingest_2_vs_1_spread']}; "
        f"updates/s 1: {result['ingest_updates_per_s_1']}, 2: {result['ingest_updates_per_s_2']}",
        file=sys.stderr,
    )
    print(
        f"connections: 1 shard {result['connections_1']}, 2 shards {result['connections_2']}",
        file=sys.stderr,
    )
    print(f"leader failover: {[round(t, 3) for t in times]} s", file=sys.stderr)
    print(f"load average (1 min) during the run: {result['load_average']}", file=sys.stderr)
    print(json.dumps(result) if opts.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
