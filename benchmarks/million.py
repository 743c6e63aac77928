"""A million devices: 10^6 emulated browsers, cohort 1,000, 20 rounds, on one machine.

One run of ``dandelion emulate`` in its own process: the population of
``examples/population.toml`` (diurnal availability over 14 time zones, log-normal speed and
bandwidth, 3% dropouts, 5% stragglers, opt-in and opt-out churn, 14 days of synthetic history
per device) grown to ``--devices`` devices, cohort 1,000 per round (1,300 assigned), in-process
on virtual time with every worker the real browser worker code and every message through the
real coordinator; devices' data built and trained in 2 worker processes. The goals: at most
600 s of wall time and 4 GB of peak memory (the whole process tree, sampled) on 2 cores.

A worker waits on an open socket for retry windows up to its ``keep_open_s`` (60 s in the file)
and closes it for longer ones. A full round asks back soon (within 20 s) only its
over-selection margin and the rest from its expected close on, most of them spread over up to
``pace_max_s`` (docs/design.md, "Pace steering for a full round"). ``--keep-open-s 10`` (a
Manifest V3 service worker that does not hold a socket through a wait) keeps only the devices
at work in a session.

    python benchmarks/million.py --keep-open-s 10 --json

With ``--json`` the last line is one JSON object: the run's summary (``dandelion emulate
--json``), ``process_wall_s`` (the whole process, start-up included), ``cpu_s`` (CPU time of the
run and its training processes: on a shared machine, what 2 cores of its own would need),
``peak_tree_rss_mb`` and whether both goals were met.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POPULATION = ROOT / "examples" / "population.toml"
WALL_GOAL_S = 600.0
RSS_GOAL_MB = 4096.0


def population(keep_open_s: float | None) -> dict[str, Any]:
    """``examples/population.toml``, with the workers' ``keep_open_s`` if given."""
    raw: dict[str, Any] = tomllib.loads(POPULATION.read_text())
    if keep_open_s is not None:
        raw.setdefault("worker", {})["keep_open_s"] = keep_open_s
    return raw


def run(
    devices: int,
    rounds: int,
    cohort: int,
    keep_open_s: float | None,
    out: str | None,
    timeout: float,
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(population(keep_open_s), f)
    try:
        return _run(Path(f.name), devices, rounds, cohort, out, timeout)
    finally:
        Path(f.name).unlink()


def _run(
    spec: Path, devices: int, rounds: int, cohort: int, out: str | None, timeout: float
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dandelion", "emulate", "--population", str(spec)]
    cmd += ["--workers", str(devices), "--rounds", str(rounds), "--cohort", str(cohort)]
    cmd += ["--backend", "processes", "--processes", "2", "--json"]
    if out:
        cmd += ["--out", out]
    started = time.perf_counter()
    # The run's progress bar goes to this script's standard error as it happens.
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run and its training processes
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"emulate failed ({proc.returncode}): see its standard error above")
    summary: dict[str, Any] = json.loads(lines[-1])
    peak = float(summary.get("peak_rss_mb") or 0.0)
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "population": json.loads(spec.read_text()),
        "devices": devices,
        "rounds_completed": summary.get("rounds"),
        "process_wall_s": round(wall, 1),
        "cpu_s": round(used.ru_utime + used.ru_stime, 1),
        "peak_tree_rss_mb": round(peak, 1),
        "wall_goal_met": wall <= WALL_GOAL_S,
        "rss_goal_met": peak <= RSS_GOAL_MB,
        "exit_status": proc.returncode,
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cohort", type=int, default=1000)
    parser.add_argument(
        "--keep-open-s",
        type=float,
        default=None,
        help="The workers' keep_open_s (longer waits close the socket) [the file's, 60].",
    )
    parser.add_argument("--out", default=None, help="Write the run's result files here.")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.devices, args.rounds, args.cohort, args.keep_open_s, args.out, args.timeout)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
