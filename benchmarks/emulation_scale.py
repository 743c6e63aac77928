"""The emulator at scale: 100,000 devices, memory as the population grows, 5,000 live sockets.

Each run is ``dandelion emulate`` in its own process (so peak memory is that run's):

(a) ``scale``: the population of ``examples/population.toml`` — 100,000 devices with diurnal
    availability over 14 time zones, log-normal speed and bandwidth, 3% dropouts, 5%
    stragglers, opt-in and opt-out churn — cohort 1,000 per round, 50 rounds, in-process on
    virtual time, training in 2 worker processes.
(b) ``memory``: the same with 10,000 devices (everything else equal): ``rss_ratio`` is the peak
    memory of (a) over (b).
(c) ``websocket``: 5,000 emulated workers, each on its own real WebSocket, against
    ``dandelion serve`` in its own process; cohort 1,000, 5 rounds; counts disconnects the
    emulator did not ask for.

    python benchmarks/emulation_scale.py --json

With ``--json`` the last line is one JSON object with each run's summary and ``rss_ratio``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POPULATION = ROOT / "examples" / "population.toml"
WEBSOCKET = """
[population]
size = {size}
[data]
history_days = 14.0
[availability]
mode = "always"
[compute]
startup_s = {{ median = 1.0, sigma = 0.5 }}
straggler_share = 0.02
straggler_slowdown = 5.0
[churn]
dropout = 0.02
reconnect_s = 60.0
[run]
rounds = {rounds}
[task]
name = "sockets"
objective = "revisit_7d"
features = {{ num_buckets = 1024 }}
model = {{ kind = "logreg" }}
hyper = {{ learning_rate = 0.3, epochs = 1, batch_size = 16, clip_norm = 10.0 }}
rounds = {{ goal = {cohort}, over_selection = 1.3, min_reports = {minimum}, deadline_s = 40.0 }}
"""


def emulate(*args: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dandelion", "emulate", *args, "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"emulate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    summary["process_wall_s"] = round(time.perf_counter() - started, 1)
    summary["exit_status"] = proc.returncode
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["scale", "memory", "websocket"], action="append")
    parser.add_argument("--out", default=None, help="Write run (a)'s CSV, JSON and SVG here.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    todo = args.only or ["scale", "memory", "websocket"]
    result: dict[str, Any] = {}
    backend = ["--backend", "processes", "--processes", "2"]
    if "scale" in todo:
        out = ["--out", args.out] if args.out else []
        result["scale"] = emulate("--population", str(POPULATION), *backend, *out, timeout=3600)
        print(json.dumps(result["scale"]), file=sys.stderr, flush=True)
    if "memory" in todo:
        result["memory"] = emulate(
            "--population", str(POPULATION), "--workers", "10000", *backend, timeout=3600
        )
        print(json.dumps(result["memory"]), file=sys.stderr, flush=True)
    if "scale" in result and "memory" in result:
        big, small = result["scale"]["peak_rss_mb"], result["memory"]["peak_rss_mb"]
        result["rss_ratio"] = round(big / small, 3)
    if "websocket" in todo:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(WEBSOCKET.format(size=5000, rounds=5, cohort=1000, minimum=800))
        result["websocket"] = emulate(
            "--population", f.name, "--mode", "websocket", "--max-wall-s", "900", timeout=1800
        )
        Path(f.name).unlink()
        print(json.dumps(result["websocket"]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
