"""Secure aggregation benchmark: per-client time and bytes in CPython and in Pyodide in
Chromium, and the coordinator's time, for SecAgg+ rounds with dropouts.

One SecAggServer (``dandelion.protocol.secagg.server``, numpy vectors, the ``cryptography``
host) and n clients: n - B in this CPython (``cryptography``, numpy vectors) and B in Pyodide
in real headless Chromium (WebCrypto, typed arrays), every message carried through its JSON
form and every masked vector as its tensor frame. ``--dropout`` of the clients (10 %) drop out
after sharing their keys, the costliest moment for the coordinator: their pairwise masks must
be rebuilt from shares. Timed per client: the time spent inside its own ``receive``/``mask``
calls over the round (key generation, agreements, Shamir, AES-GCM of the shares, the fixed-point
encoding, the mask expansions, the reveal), not the time it waits for others. Timed for the
coordinator: its ``receive``/``tick`` calls, the unmasking included. Bytes: what one client
sends and receives (JSON messages and frames), median over clients.

Beside it, in the same run and at the same n, d, k, t, clip norm, fixed-point step and dropout
fraction and moment: Flower 1.41's SecAgg+ (its real ``SecAggPlusWorkflow`` and
``secaggplus_mod`` in its Ray simulation), run by ``benchmarks/flower_secagg_side.py`` in
Flower's own virtual environment (``--flower-venv``; made and filled once by
``benchmarks/peer_envs.py`` when missing). Flower's client time is the time inside its
``secaggplus_mod`` (its ``fit`` left out), its coordinator time the time inside the workflow's
stage functions minus their waits for clients (``grid.send_and_receive``) and the strategy's
own work; its start-up (Ray, actors, a first message to every node) is reported apart.
``--skip-flower`` runs Dandelion's side only.

    python benchmarks/secagg.py --sizes 100,1000 --dims 1000,100000 --json

With ``--json`` the last line is one JSON object with ``pyodide_client_s_n<N>_d<d>``,
``cpython_client_s_n<N>_d<d>`` and ``coordinator_s_n<N>_d<d>`` for every size, and with Flower
``flower_client_s_n<N>_d<d>``, ``flower_coordinator_s_n<N>_d<d>``,
``coordinator_speedup_vs_flower_n<N>_d<d>`` (Flower's time over ours) and
``coordinator_vs_flower_n<N>_d<d>`` (ours over Flower's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.peer_envs import ensure_flower  # noqa: E402
from dandelion.crypto import CryptographyHost, NumpyMod32  # noqa: E402
from dandelion.protocol.secagg import SecAggParams  # noqa: E402
from dandelion.protocol.secagg.client import ClientState, SecAggClient  # noqa: E402
from dandelion.protocol.secagg.messages import (  # noqa: E402
    SecAggMessage,
    encode_secagg,
    parse_secagg,
)
from dandelion.protocol.secagg.server import SecAggServer  # noqa: E402
from tests.browser.secagg_page import CLIENT_CODE, BrowserClient  # noqa: E402

HOST = CryptographyHost()


class Timed:
    """A CPython client with the time spent in its own calls."""

    def __init__(self) -> None:
        self.client = SecAggClient(HOST, NumpyMod32())
        self.spent = self.cpu = 0.0

    @property
    def state(self) -> ClientState:
        return self.client.state

    async def receive(self, msg: SecAggMessage) -> list[SecAggMessage]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = await self.client.receive(msg)
        self.spent += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        return out

    async def mask(self, values: list[float]) -> tuple[SecAggMessage, bytes]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = await self.client.mask(values)
        self.spent += time.perf_counter() - t0
        self.cpu += time.process_time() - c0
        return out


def wire(msg: SecAggMessage) -> tuple[SecAggMessage, int]:
    raw = encode_secagg(msg)
    return parse_secagg(raw), len(raw.encode())


async def secure_round(
    n: int, d: int, dropout: float, page: Any | None, browsers: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    params = SecAggParams.choose(n, d, 1.0)
    server = SecAggServer(params, "bench", 1, HOST, 0.0, ops=NumpyMod32(), seed=rng.randbytes(32))
    in_browser = set(rng.sample(range(1, n + 1), browsers)) if page is not None else set()
    clients: dict[int, Any] = {
        i: BrowserClient(page, i) if i in in_browser else Timed() for i in range(1, n + 1)
    }
    if page is not None:
        await page.evaluate("(c) => window.__run(c)", CLIENT_CODE)  # fresh clients
    # the dropouts are CPython clients, so that every browser client's time is a whole round's
    cpython = sorted(set(clients) - in_browser)
    dropped = set(rng.sample(cpython, round(dropout * n)))

    def update(i: int) -> list[float]:  # made when it is masked: n x d floats would not fit
        values = np.random.default_rng([seed, i]).uniform(-1, 1, d) / d**0.5
        return [float(v) for v in values]

    sent = dict.fromkeys(clients, 0)
    got = dict.fromkeys(clients, 0)
    server_s, server_cpu, now, phase_no = 0.0, 0.0, 0.0, 0
    while not server.finished:
        phase = server.phase
        replies: list[tuple[int, SecAggMessage, int, bytes | None]] = []
        for i, msg in server.take_outbox():
            msg, size = wire(msg)
            got[i] += size
            if i in dropped and phase_no >= 2:  # gone after sharing: masked phase on
                continue
            out = await clients[i].receive(msg)
            replies.extend((i, *wire(m), None) for m in out)
            if clients[i].state is ClientState.RELAYED and i not in dropped:
                masked, frame = await clients[i].mask(update(i))
                m, size = wire(masked)
                replies.append((i, m, size, frame))
        for i, m, size, frame in replies:
            sent[i] += size + (len(frame) if frame else 0)
            t0, c0 = time.perf_counter(), time.process_time()
            await server.receive(i, m, now, frame)
            server_s += time.perf_counter() - t0
            server_cpu += time.process_time() - c0
        if server.phase is phase:
            now = server.deadline
            t0, c0 = time.perf_counter(), time.process_time()
            await server.tick(now)
            server_s += time.perf_counter() - t0
            server_cpu += time.process_time() - c0
        phase_no += 1
    for i, msg in server.take_outbox():
        got[i] += wire(msg)[1]
    assert server.result is not None, server.abandon_reason
    browser_s: list[float] = []
    if page is not None:
        spent = json.loads(await page.evaluate("(c) => window.__run(c)", "secagg_spent()"))
        browser_s = [spent[str(i)] / 1000 for i in sorted(in_browser)]
    cpython_s = [clients[i].spent for i in cpython if i not in dropped]
    cpython_cpu = [clients[i].cpu for i in cpython if i not in dropped]
    survivors = [i for i in clients if i not in dropped]
    return {
        "n": n,
        "d": d,
        "degree": params.degree,
        "threshold": params.threshold,
        "dropped": len(dropped),
        "cpython_client_s": statistics.median(cpython_s),
        "cpython_client_s_max": max(cpython_s),
        "cpython_client_cpu_s": statistics.median(cpython_cpu),
        "pyodide_client_s": statistics.median(browser_s) if browser_s else None,
        "pyodide_client_s_all": browser_s,
        "coordinator_s": server_s,
        "coordinator_cpu_s": server_cpu,
        "scale_bits": params.scale_bits,
        "clip_norm": params.clip_norm,
        "client_sent_bytes": statistics.median(sent[i] for i in survivors),
        "client_received_bytes": statistics.median(got[i] for i in survivors),
        "plain_update_bytes": 4 * d,
    }


FLOWER_DIFFERS = """\
Where Flower's SecAgg+ differs (same n, d, k neighbours, t, clip, fixed-point step, dropouts):
- its num_shares = k + 1: Flower counts the client itself among the holders of its shares;
- keys: ECDH on P-384 (Dandelion: X25519); shares encrypted with Fernet (AES-128-CBC + HMAC;
  Dandelion: AES-256-GCM); Shamir from PyCryptodome over GF(2^128) in 16-byte chunks (Dandelion:
  one element of GF(2^521 - 1)); no round context bound into its key derivations;
- masks: numpy's RandomState seeded with 32 bits XOR-folded from the key, not a cryptographic PRG
  (Dandelion: AES-256-CTR under HKDF of the agreement); masks and masked vectors are int64, so
  a client sends 8 bytes per parameter (Dandelion: 4, mod 2^32);
- quantization: stochastic rounding into [0, 2*C*2^f], a weight factor sent masked beside the
  vector; modulus 2^32; the server divides by the sum of weights (a mean; Dandelion: the sum);
- a dropped client answers the collect-masked-vectors stage with an error reply at once
  (Dandelion's server reaches the phase deadline at once: the clock is passed in);
- its collect-masked-vectors instruction carries the global model (d float32; counted apart);
- its server sums masked vectors after all have arrived (Dandelion: one running sum) and, for
  FedAvg's sake, averages n copies of the unmasked vector (left out of its time, shown apart);
- its clients run in 2 Ray actors, two at a time; Dandelion's one after another in one process.
"""


async def run_flower(
    python: Path, r: dict[str, Any], dropout: float, seed: int, timeout: float
) -> dict[str, Any]:
    """One Flower SecAgg+ round at the parameters of Dandelion's round ``r``, in Flower's own
    Python (``benchmarks/flower_secagg_side.py``), stopped (its whole process group, Ray's
    processes included) after ``timeout`` seconds. What it printed, with ``timed_out`` and
    ``ran_s`` (how long it ran)."""
    with tempfile.TemporaryDirectory(prefix="flower-secagg-") as work:
        launched = time.time()
        args = [r["n"], r["d"], r["degree"], r["threshold"], r["scale_bits"], r["clip_norm"]]
        cmd = [str(python), str(ROOT / "benchmarks" / "flower_secagg_side.py")]
        cmd += [str(a) for a in [*args, dropout, seed, work, launched]]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ray's processes join its group: one signal stops them all
        )
        got: dict[str, Any] = {"timed_out": False}
        tail: list[str] = []

        async def read_out() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):  # Ray's output, not ours
                        got.update(json.loads(line))

        async def read_err() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                tail.append(raw.decode(errors="replace"))
                del tail[:-20]

        try:
            await asyncio.wait_for(asyncio.gather(read_out(), read_err(), proc.wait()), timeout)
        except TimeoutError:
            got["timed_out"] = True
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        got["ran_s"] = time.time() - launched
        if "summary" not in got and not got["timed_out"]:
            got["stderr_tail"] = "".join(tail)
    return got


def flower_figures(r: dict[str, Any], f: dict[str, Any]) -> dict[str, Any]:
    """Flower's figures beside Dandelion's round ``r`` (None where its round did not finish)."""
    summary, rnd, startup = f.get("summary", {}), f.get("round", {}), f.get("startup", {})
    out: dict[str, Any] = {
        "flower_timed_out": f["timed_out"],
        "flower_ran_s": f["ran_s"],
        "flower_startup_s": startup.get("launch_to_ready_s"),
        "flower_round_wall_s": rnd.get("wall_s"),
        "flower_coordinator_s": rnd.get("server_s"),
        "flower_coordinator_cpu_s": rnd.get("server_cpu_s"),
        "flower_coordinator_stages_cpu_s": rnd.get("stages_cpu_s"),
        "flower_coordinator_stages_s": rnd.get("stages_s"),
        "flower_coordinator_waits_s": rnd.get("waits_s"),
        "flower_excluded_s": rnd.get("excluded_s"),
        "flower_max_abs_error": rnd.get("max_abs_error"),
        "flower_results": rnd.get("results"),
        "flower_client_s": summary.get("client_s"),
        "flower_client_s_max": summary.get("client_s_max"),
        "flower_client_cpu_s": summary.get("client_cpu_s"),
        "flower_client_s_q1_q3": summary.get("client_s_q1_q3"),
        "flower_client_sent_bytes": summary.get("client_sent_bytes"),
        "flower_client_received_bytes": summary.get("client_received_bytes"),
        "flower_client_model_bytes": summary.get("client_model_bytes"),
        "flower_error": f.get("stderr_tail") or summary.get("error"),
    }
    theirs, ours = out["flower_coordinator_s"], r["coordinator_s"]
    out["coordinator_speedup_vs_flower"] = theirs / ours if theirs and ours else None
    out["coordinator_vs_flower"] = ours / theirs if theirs and ours else None
    theirs, ours = out["flower_coordinator_cpu_s"], r.get("coordinator_cpu_s")
    out["coordinator_cpu_speedup_vs_flower"] = theirs / ours if theirs and ours else None
    return out


def _s(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_table(results: list[dict[str, Any]]) -> None:
    """The side-by-side table, on standard error."""
    head = (
        f"{'n':>5} {'d':>7} {'k':>3} {'t':>3} | {'client s: CPython':>17} {'Pyodide':>8} "
        f"{'Flower':>8} | {'coordinator s: ours':>19} {'Flower':>8} {'Flower/ours':>11} | "
        f"{'sent B: ours':>12} {'Flower':>10} | {'Flower start s':>14} {'round wall s':>12}"
    )
    print(head, file=sys.stderr)
    for r in results:
        stopped = r.get("flower_timed_out")
        timed_out = f" (Flower stopped after {r['flower_ran_s']:.0f} s)" if stopped else ""
        print(
            f"{r['n']:5d} {r['d']:7d} {r['degree']:3d} {r['threshold']:3d} | "
            f"{r['cpython_client_s']:17.3f} {_s(r['pyodide_client_s']):>8} "
            f"{_s(r.get('flower_client_s')):>8} | {r['coordinator_s']:19.3f} "
            f"{_s(r.get('flower_coordinator_s')):>8} "
            f"{_s(r.get('coordinator_speedup_vs_flower'), '.2f'):>11} | "
            f"{r['client_sent_bytes']:12,} {_s(r.get('flower_client_sent_bytes'), ',.0f'):>10} | "
            f"{_s(r.get('flower_startup_s'), '.1f'):>14} "
            f"{_s(r.get('flower_round_wall_s'), '.1f'):>12}{timed_out}",
            file=sys.stderr,
        )
    print(
        "CPU time (process_time; the machine is shared, wall times above include waiting for a "
        "core):",
        file=sys.stderr,
    )
    for r in results:
        print(
            f"{r['n']:5d} {r['d']:7d} | client CPython {r['cpython_client_cpu_s']:.3f} s, Flower "
            f"{_s(r.get('flower_client_cpu_s'))} s | coordinator ours {r['coordinator_cpu_s']:.3f}"
            f" s, Flower {_s(r.get('flower_coordinator_cpu_s'))} s, Flower/ours "
            f"{_s(r.get('coordinator_cpu_speedup_vs_flower'), '.2f')}",
            file=sys.stderr,
        )
    if any("flower_client_s" in r for r in results):
        print(FLOWER_DIFFERS, file=sys.stderr)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000", help="n, comma-separated")
    ap.add_argument("--dims", default="1000,100000", help="d, comma-separated")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--browsers", type=int, default=3, help="clients in Chromium per round")
    ap.add_argument("--repeats", type=int, default=1, help="rounds per size (median reported)")
    ap.add_argument("--no-browser", action="store_true", help="CPython clients only")
    ap.add_argument(
        "--flower", action="store_true", default=True, help="run Flower's SecAgg+ beside (default)"
    )
    ap.add_argument("--skip-flower", dest="flower", action="store_false", help="Dandelion only")
    ap.add_argument(
        "--flower-venv",
        default=str(ROOT / ".bench-venvs" / "flower"),
        help="Flower's virtual environment (made and filled when missing)",
    )
    ap.add_argument("--flower-repeats", type=int, default=1, help="Flower rounds per size")
    ap.add_argument(
        "--flower-timeout", type=float, default=900.0, help="seconds before a Flower run stops"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--details", help="write every figure of every size as JSON to this file")
    args = ap.parse_args()
    flower = ensure_flower(Path(args.flower_venv)) if args.flower else None
    sizes = [int(x) for x in args.sizes.split(",")]
    dims = [int(x) for x in args.dims.split(",")]
    results: list[dict[str, Any]] = []

    async def run_all(page: Any | None) -> None:
        for n in sizes:
            for d in dims:
                runs = [
                    await secure_round(n, d, args.dropout, page, args.browsers, seed)
                    for seed in range(args.repeats)
                ]
                runs.sort(key=lambda r: r["coordinator_s"])
                best = runs[len(runs) // 2]
                best["coordinator_s_range"] = [runs[0]["coordinator_s"], runs[-1]["coordinator_s"]]
                clients = sorted(r["cpython_client_s"] for r in runs)
                best["cpython_client_s_range"] = [clients[0], clients[-1]]
                results.append(best)
                pyo = best["pyodide_client_s"]
                print(
                    f"n={n:5d} d={d:7d} k={best['degree']:3d} t={best['threshold']:3d} "
                    f"dropped={best['dropped']:3d}  client CPython {best['cpython_client_s']:.3f} s"
                    f"  Pyodide {'-' if pyo is None else f'{pyo:.3f}'} s  coordinator "
                    f"{best['coordinator_s']:.2f} s  client sends {best['client_sent_bytes']:,} B "
                    f"(plain update {best['plain_update_bytes']:,} B), receives "
                    f"{best['client_received_bytes']:,} B",
                    file=sys.stderr,
                    flush=True,
                )
                if flower is not None:
                    best.update(await flower_side(flower, best))

    async def flower_side(python: Path, r: dict[str, Any]) -> dict[str, Any]:
        runs = []
        for seed in range(args.flower_repeats):
            got = await run_flower(python, r, args.dropout, seed, args.flower_timeout)
            runs.append(flower_figures(r, got))
            f = runs[-1]
            print(
                f"  Flower n={r['n']:5d} d={r['d']:7d}: start-up {_s(f['flower_startup_s'], '.1f')}"
                f" s, round wall {_s(f['flower_round_wall_s'], '.1f')} s, client "
                f"{_s(f['flower_client_s'])} s (CPU {_s(f['flower_client_cpu_s'])}), coordinator "
                f"{_s(f['flower_coordinator_s'])} s (CPU {_s(f['flower_coordinator_cpu_s'])}), "
                f"sends {_s(f['flower_client_sent_bytes'], ',.0f')} B, max error of the mean "
                f"{_s(f['flower_max_abs_error'], '.2e')}"
                + (f" — stopped after {f['flower_ran_s']:.0f} s" if f["flower_timed_out"] else "")
                + f"\n    Flower's server by stage, wall s {f['flower_coordinator_stages_s']}, "
                f"CPU s {f['flower_coordinator_stages_cpu_s']}; left out {f['flower_excluded_s']}"
                + (f"\n{f['flower_error']}" if f["flower_error"] else ""),
                file=sys.stderr,
                flush=True,
            )
        done = sorted(
            (f for f in runs if f["flower_coordinator_s"] is not None),
            key=lambda f: f["flower_coordinator_s"],
        )
        if not done:
            return runs[-1]
        mid = done[len(done) // 2]
        mid["flower_coordinator_s_range"] = [
            done[0]["flower_coordinator_s"],
            done[-1]["flower_coordinator_s"],
        ]
        mid["flower_rounds"] = len(done)
        return mid

    if args.no_browser:
        await run_all(None)
    else:
        from playwright.async_api import async_playwright

        from dandelion.bundle import assemble_bundle
        from tests.browser.harness import (
            CHROMIUM_ARGS,
            CoordinatorProcess,
            PageServer,
            chromium_path,
            pyodide_page,
            task_toml,
        )

        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle"
            assemble_bundle(bundle)
            (Path(tmp) / "c").mkdir()
            coord = CoordinatorProcess(Path(tmp) / "c", bundle, task_toml())
            await coord.start()
            server = PageServer(pyodide_page(coord.http + "/worker/"), {})
            await server.start()
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=chromium_path(), args=CHROMIUM_ARGS
                    )
                    page = await browser.new_page()
                    await page.goto(server.url)
                    await page.wait_for_function(
                        "() => Boolean(window.__run || window.__error)", timeout=120_000
                    )
                    await run_all(page)
                    await browser.close()
            finally:
                await server.stop()
                coord.stop()
    print_table(results)
    if args.details:
        Path(args.details).write_text(json.dumps(results, indent=1, default=str))
    if args.json:
        out: dict[str, Any] = {}
        for r in results:
            tag = f"n{r['n']}_d{r['d']}"
            out[f"cpython_client_s_{tag}"] = round(r["cpython_client_s"], 4)
            if r["pyodide_client_s"] is not None:
                out[f"pyodide_client_s_{tag}"] = round(r["pyodide_client_s"], 4)
            out[f"coordinator_s_{tag}"] = round(r["coordinator_s"], 3)
            out[f"cpython_client_cpu_s_{tag}"] = round(r["cpython_client_cpu_s"], 4)
            out[f"coordinator_cpu_s_{tag}"] = round(r["coordinator_cpu_s"], 3)
            out[f"client_sent_bytes_{tag}"] = r["client_sent_bytes"]
            if r.get("flower_client_s") is not None:
                out[f"flower_client_s_{tag}"] = round(r["flower_client_s"], 4)
                out[f"flower_client_sent_bytes_{tag}"] = r["flower_client_sent_bytes"]
                out[f"flower_client_cpu_s_{tag}"] = round(r["flower_client_cpu_s"], 4)
            if r.get("flower_coordinator_s") is not None:
                out[f"flower_coordinator_s_{tag}"] = round(r["flower_coordinator_s"], 3)
                out[f"flower_startup_s_{tag}"] = round(r["flower_startup_s"], 1)
                out[f"flower_round_wall_s_{tag}"] = round(r["flower_round_wall_s"], 1)
                out[f"coordinator_speedup_vs_flower_{tag}"] = round(
                    r["coordinator_speedup_vs_flower"], 2
                )
                out[f"coordinator_vs_flower_{tag}"] = round(r["coordinator_vs_flower"], 3)
                out[f"flower_coordinator_cpu_s_{tag}"] = round(r["flower_coordinator_cpu_s"], 3)
                out[f"coordinator_cpu_speedup_vs_flower_{tag}"] = round(
                    r["coordinator_cpu_speedup_vs_flower"], 2
                )
            elif r.get("flower_timed_out"):
                out[f"flower_stopped_after_s_{tag}"] = round(r["flower_ran_s"])
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
