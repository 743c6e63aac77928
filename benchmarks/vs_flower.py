"""Dandelion's emulator against Flower's simulation, side by side in one run.

The same model (logistic regression with d = 1,000 and d = 100,000 parameters: the revisit
features with d - 21 hashed domain buckets), the same data (each client one synthetic user, 14
days of history, through the browser worker's feature pipeline, made once into a table both
read), the same local SGD (learning rate 0.3, 1 epoch, batch 16), every client every round,
N = 100, 1,000 and 10,000 clients, 3 rounds each:

- Dandelion: ``dandelion emulate`` in its own process, in-process mode on virtual time, every
  worker the real browser worker code with the vectorized trainer, every update through the
  real coordinator (schema validation, server-side clipping, streaming aggregation, FedAvg).
- Flower 1.41 (``flwr[simulation]``, Ray backend, one CPU per client), installed by this
  script into its own virtual environment (``.bench-venvs/flower``, idempotent), bounded by
  ``--flower-timeout`` seconds per configuration.

For each: rounds completed, clients per second over the rounds (first round's start to last
round's end, set-up excluded for both), and the peak resident memory of the whole process tree
(sampled from /proc every 0.2 s).

    python benchmarks/vs_flower.py --json

With ``--json`` the last line is one JSON object: ``results`` (one entry per framework, N, d),
``speedup_vs_flower_n<N>_d<d>`` for each configuration where Flower completed a round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dandelion.emulation.memory import tree_rss_mb  # noqa: E402

FLOWER = "flwr[simulation]==1.41.0"
HYPER = {"learning_rate": 0.3, "epochs": 1, "batch_size": 16, "clip_norm": 10.0}
DENSE = 20  # NUM_DENSE features before the hashed buckets, plus 1 bias = 21


def ensure_flower(venv: Path) -> Path:
    """Flower in its own virtual environment (created and filled once)."""
    python = venv / "bin" / "python"
    ok = python.exists() and (
        subprocess.run([python, "-c", "import flwr, ray"], capture_output=True).returncode == 0
    )
    if not ok:
        print(f"installing {FLOWER} into {venv} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", FLOWER],
            check=True,
        )
    return python


def _user(args: tuple[int, int, int]) -> Any:
    from dandelion.emulation.localdata import SyntheticSource

    seed, buckets, device = args
    return SyntheticSource(seed=seed, num_buckets=buckets, history_days=14.0).local(device)


def make_table(path: Path, n: int, d: int, seed: int) -> Path:
    """Each client's data (one synthetic user each) and a held-out test set, made once."""
    if path.exists():
        return path
    from dandelion.emulation.localdata import SyntheticSource, save_table

    buckets = d - 1 - DENSE
    print(f"making data for {n} clients, d = {d} ...", file=sys.stderr, flush=True)
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        users = pool.map(_user, [(seed, buckets, i) for i in range(n)], chunksize=64)
    source = SyntheticSource(seed=seed, num_buckets=buckets, history_days=14.0)
    tmp = path.with_suffix(".tmp.npz")
    save_table(tmp, users, source.test_set(), source.num_features)
    tmp.rename(path)
    return path


class TreeMemory:
    """Samples the resident memory of a process and its descendants until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_dandelion(table: Path, n: int, rounds: int, timeout: float) -> dict[str, Any]:
    population = {
        "population": {"size": n, "seed": 1},
        "availability": {"mode": "always"},
        "compute": {
            "startup_s": 5.0,  # a browser loading Pyodide and reading its history
            "examples_per_s": 1e6,
            "straggler_share": 0.0,
        },
        "network": {"down_mbps": 1000.0, "up_mbps": 1000.0, "latency_ms": 1.0},
        "churn": {"dropout": 0.0},
        "worker": {"keep_open_s": 3600.0},
        "run": {"rounds": rounds},
        "task": {
            "name": "vs-flower",
            "objective": "revisit_7d",
            "features": {"num_buckets": 1024},  # replaced below: the model follows the table
            "model": {"kind": "logreg", "num_features": 0},
            "hyper": HYPER,
            "server": {"optimizer": "fedavg", "weighting": "examples"},
            "rounds": {
                "goal": n,
                "over_selection": 1.0,
                "min_reports": n,
                "deadline_s": 3600.0,
                "max_rounds": rounds,
            },
        },
    }
    from dandelion.emulation.localdata import TableSource

    nf = TableSource(table).num_features
    population["task"]["features"] = {"num_buckets": nf - DENSE}
    population["task"]["model"] = {"kind": "logreg", "num_features": nf}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(population, f)
    cmd = [sys.executable, "-m", "dandelion", "emulate", "--population", f.name]
    cmd += ["--data", str(table), "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    memory = TreeMemory(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    peak = memory.stop()
    os.unlink(f.name)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    return {
        "framework": "dandelion",
        "n": n,
        "rounds": summary.get("rounds", 0),
        "clients_per_s": summary.get("clients_per_s", 0.0),
        "rounds_wall_s": summary.get("wall_s"),
        "process_wall_s": round(time.perf_counter() - started, 1),
        "final_accuracy": summary.get("final_accuracy"),
        "peak_tree_rss_mb": round(peak, 1),
    }


def run_flower(python: Path, table: Path, n: int, rounds: int, timeout: float) -> dict[str, Any]:
    h = HYPER
    cmd = [str(python), str(ROOT / "benchmarks" / "flower_side.py"), str(table), str(n)]
    cmd += [str(rounds), str(h["learning_rate"]), str(h["epochs"]), str(h["batch_size"])]
    cmd += [str(h["clip_norm"])]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # Ray's processes share the group: one signal stops them all
    )
    memory = TreeMemory(proc.pid)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    peak = memory.stop()
    marks = [json.loads(line) for line in out.splitlines() if line.startswith('{"round"')]
    done = [m for m in marks if m["results"] == n]
    span = (done[-1]["end"] - marks[0]["start"]) if done else 0.0
    return {
        "framework": "flower",
        "n": n,
        "rounds": len(done),
        "clients_per_s": round(n * len(done) / span, 1) if span > 0 else 0.0,
        "rounds_wall_s": round(span, 2) if done else None,
        "process_wall_s": round(time.perf_counter() - started, 1),
        "timed_out": timed_out,
        "peak_tree_rss_mb": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--dims", default="1000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flower-timeout", type=float, default=300.0)
    parser.add_argument("--venv", default=str(ROOT / ".bench-venvs" / "flower"))
    parser.add_argument("--data-dir", default=str(ROOT / ".bench-venvs" / "data"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    python = None if args.skip_flower else ensure_flower(Path(args.venv))
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"rounds": args.rounds, "hyper": HYPER}
    for d in dims:
        table = make_table(
            data_dir / f"vs_flower_d{d}_n{max(sizes)}_s{args.seed}.npz", max(sizes), d, args.seed
        )
        for n in sizes:
            part = make_subtable(table, n, data_dir)
            ours = run_dandelion(part, n, args.rounds, timeout=3600.0)
            ours["d"] = d
            results.append(ours)
            print(json.dumps(ours), file=sys.stderr, flush=True)
            if python is None:
                continue
            theirs = run_flower(python, part, n, args.rounds, args.flower_timeout)
            theirs["d"] = d
            results.append(theirs)
            print(json.dumps(theirs), file=sys.stderr, flush=True)
            if theirs["clients_per_s"] > 0:
                ratio = ours["clients_per_s"] / theirs["clients_per_s"]
                summary[f"speedup_vs_flower_n{n}_d{d}"] = round(ratio, 1)
            else:
                summary[f"speedup_vs_flower_n{n}_d{d}"] = None  # Flower completed no round
    summary["results"] = results
    if args.json:
        print(json.dumps(summary))
    else:
        for r in results:
            print(r)


def make_subtable(table: Path, n: int, data_dir: Path) -> Path:
    """The first ``n`` clients of ``table`` (so every N uses the same users)."""
    import numpy as np

    from dandelion.emulation.localdata import load_table

    out = data_dir / f"{table.stem}_first{n}.npz"
    if out.exists():
        return out
    t = load_table(table)
    ptr = t["ptr"][: n + 1]
    end = int(ptr[-1])
    np.savez(
        out,
        num_features=t["num_features"],
        ptr=ptr,
        indices=t["indices"][:end],
        values=t["values"][:end],
        labels=t["labels"][:end],
        test_indices=t["test_indices"],
        test_values=t["test_values"],
        test_labels=t["test_labels"],
    )
    return out


if __name__ == "__main__":
    main()
