"""Dandelion's emulator against Flower's simulation and pfl-research's, side by side in one run.

The same model (logistic regression with d = 1,000 and d = 100,000 parameters: the revisit
features with d - 21 hashed domain buckets), the same data (each client one synthetic user, 14
days of history, through the browser worker's feature pipeline, made once into a table all
three read), the same local SGD (learning rate 0.3, 1 epoch, batch 16, the delta clipped to L2
norm 10), FedAvg weighted by examples, every client every round, N = 100, 1,000 and 10,000
clients, 5 rounds each:

- Dandelion: ``dandelion emulate`` in its own process, in-process mode on virtual time, every
  worker the real browser worker code with the vectorized trainer, every update through the
  real coordinator (schema validation, server-side clipping, streaming aggregation, FedAvg);
  one process, BLAS on one thread.
- Flower 1.41 (``flwr[simulation]``, Ray backend, one CPU per client: two actors on two cores),
  each client training with Dandelion's numpy SGD (``benchmarks/flower_side.py``).
- pfl-research 0.6.0 (``pfl``, PyTorch 2.13 CPU, ``SimulatedBackend`` in one process, torch on
  one thread), a sparse logistic regression in torch with ``torch.optim.SGD``
  (``benchmarks/pfl_side.py``).

Flower and pfl run in their own virtual environments, which this script makes and fills once
(``.bench-venvs/flower`` and ``.bench-venvs/pfl``; ``benchmarks/peer_envs.py``). Each run is
bounded by ``--peer-timeout`` seconds.

Every side is timed over the same span, cut the same way (``benchmarks/steady.py``): the first
round apart (it carries each side's start-up), and the steady state, rounds 2..R, from the first
round's close to the last one's: clients per second = N (R - 1) over that span, with the spread
of the steady rounds' own rates. What each side's clock leaves out is in ``EXCLUDES`` and in the
output. The final model's held-out accuracy on every side, and the distance between the peers'
final models and Dandelion's, check that the three did the same arithmetic.

    python benchmarks/vs_flower.py --json

With ``--json`` the last line is one JSON object: ``results`` (one entry per framework, N, d),
``dandelion_clients_per_s_n<N>_d<d>`` (steady state), ``speedup_vs_flower_steady_n<N>_d<d>`` and
``speedup_vs_pfl_steady_n<N>_d<d>`` (None where the peer completed fewer than two rounds), their
spread and first-round ratios under ``speedups``, and ``arithmetic`` (accuracies and model
distances per configuration).
"""

from __future__ import annotations

import argparse
import csv
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

from benchmarks.peer_envs import ensure_flower, ensure_pfl  # noqa: E402
from benchmarks.steady import MIN_ROUNDS, round_figures, speedup  # noqa: E402
from dandelion.emulation.memory import tree_rss_mb  # noqa: E402

HYPER = {"learning_rate": 0.3, "epochs": 1, "batch_size": 16, "clip_norm": 10.0}
DENSE = 20  # NUM_DENSE features before the hashed buckets, plus 1 bias = 21
# The same arithmetic, within what different shuffles and float32 leave: final held-out
# accuracies at most a point apart and final models pointing the same way.
AGREE_ACCURACY = 0.01
AGREE_COSINE = 0.99

#: What each side's clock leaves out (``start``) and what its first round holds.
EXCLUDES = {
    "dandelion": (
        "clock starts after the coordinator has started and added the task, with the data "
        "table open (process start, imports and that set-up excluded); round 1 holds the "
        "workers' sessions opening (hello, welcome, first check-in) and their examples being "
        "read; every round includes the held-out evaluation of the new model"
    ),
    "flower": (
        "clock starts at the first configure_fit (process start, imports, Ray's start and the "
        "server app's set-up excluded); round 1 holds the Ray actors' start and each actor's "
        "first load of the data table; no evaluation between rounds"
    ),
    "pfl": (
        "clock starts just before algorithm.run (process start, torch and pfl imports and the "
        "table loaded into tensors excluded); round 1 holds torch's first steps; users' local "
        "evaluation off in every round; no evaluation between rounds"
    ),
}


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


def _run_process(cmd: list[str], timeout: float) -> tuple[str, float, float, bool]:
    """Run ``cmd`` in its own process group (Ray's processes share it: one signal stops them
    all); its standard output, its launch time (time.time()), the process tree's peak memory,
    and whether it timed out."""
    launched = time.time()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    memory = TreeMemory(proc.pid)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out, launched, memory.stop(), timed_out


def _figures(n: int, start: float | None, ends: list[float]) -> dict[str, Any]:
    if start is None or len(ends) < 2:
        return {"rounds": len(ends), "steady_clients_per_s": None}
    return round_figures(n, start, ends)


def run_dandelion(table: Path, n: int, rounds: int, timeout: float, work: Path) -> dict[str, Any]:
    from dandelion.emulation.localdata import TableSource

    nf = TableSource(table).num_features
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
            "features": {"num_buckets": nf - DENSE},  # the model follows the table
            "model": {"kind": "logreg", "num_features": nf},
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
    out_dir = work / f"dandelion_n{n}"
    spec = work / f"population_n{n}.json"
    spec.write_text(json.dumps(population))
    cmd = [sys.executable, "-m", "dandelion", "emulate", "--population", str(spec)]
    cmd += ["--data", str(table), "--out", str(out_dir), "--json"]
    out, launched, peak, timed_out = _run_process(cmd, timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    ends: list[float] = []
    if (out_dir / "timing.csv").exists():
        with (out_dir / "timing.csv").open() as f:
            ends = [float(r["wall_s"]) for r in csv.DictReader(f) if r["status"] == "completed"]
    model = out_dir / "model.safetensors"
    return {
        "framework": "dandelion",
        "n": n,
        **_figures(n, 0.0, ends),
        "process_wall_s": round(time.time() - launched, 1),
        "final_accuracy": summary.get("final_accuracy"),
        "model": str(model) if model.exists() else None,
        "timed_out": timed_out,
        "peak_tree_rss_mb": round(peak, 1),
    }


def run_peer(
    framework: str, python: Path, table: Path, n: int, rounds: int, timeout: float, work: Path
) -> Any:
    """Run ``benchmarks/<framework>_side.py`` (``flower`` or ``pfl``) in the peer's own Python.
    Each side prints one JSON line as its clock starts (``start``; Flower's is on its first
    round's line), one per round (``round``, ``end``; Flower's also the ``results`` it got: a
    round counts only with every client's), and its final accuracy."""
    h = HYPER
    model = work / f"{framework}_n{n}.npy"
    cmd = [str(python), str(ROOT / "benchmarks" / f"{framework}_side.py"), str(table), str(n)]
    cmd += [str(rounds), str(h["learning_rate"]), str(h["epochs"]), str(h["batch_size"])]
    cmd += [str(h["clip_norm"]), str(model)]
    out, launched, peak, timed_out = _run_process(cmd, timeout)
    marks = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = [m for m in marks if "round" in m and m.get("results", n) == n]
    start = next((m["start"] for m in marks if "start" in m), None)
    final: dict[str, Any] = next((m for m in marks if "final_accuracy" in m), {})
    return {
        "framework": framework,
        "n": n,
        **_figures(n, start, [m["end"] for m in done]),
        "setup_s": round(start - launched, 1) if start is not None else None,
        "process_wall_s": round(time.time() - launched, 1),
        "final_accuracy": final.get("final_accuracy"),
        "model": str(model) if model.exists() else None,
        "timed_out": timed_out,
        "peak_tree_rss_mb": round(peak, 1),
    }


def arithmetic(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Whether a peer computed what Dandelion computed: the final held-out accuracies side by
    side, and the distance between the final models relative to Dandelion's (the peers shuffle
    with their own generators and pfl trains in float32, so the models agree closely, not to
    the bit)."""
    import numpy as np

    from dandelion.export import read_safetensors

    out: dict[str, Any] = {
        "dandelion_accuracy": ours.get("final_accuracy"),
        f"{theirs['framework']}_accuracy": theirs.get("final_accuracy"),
    }
    a, b = ours.get("final_accuracy"), theirs.get("final_accuracy")
    out["accuracy_gap"] = round(abs(a - b), 4) if a is not None and b is not None else None
    if ours.get("model") and theirs.get("model"):
        mine = np.asarray(read_safetensors(Path(ours["model"]).read_bytes())[0], dtype=np.float64)
        other = np.load(theirs["model"]).astype(np.float64)
        if mine.shape == other.shape:
            rel = float(np.linalg.norm(mine - other) / max(np.linalg.norm(mine), 1e-300))
            cos = float(mine @ other / max(np.linalg.norm(mine) * np.linalg.norm(other), 1e-300))
            out["model_relative_distance"] = round(rel, 4)
            out["model_cosine"] = round(cos, 4)
    gap, cosine = out["accuracy_gap"], out.get("model_cosine")
    out["agree"] = (
        gap is not None and gap <= AGREE_ACCURACY and cosine is not None and cosine >= AGREE_COSINE
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--dims", default="1000,100000")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"[{MIN_ROUNDS}, at least]")
    parser.add_argument(
        "--flower-sizes",
        default="100,1000",
        help="sizes Flower runs at [100,1000]: at 10,000 its dispatch loop finished no round in "
        "600 s here (add 10000 to see it time out)",
    )
    parser.add_argument("--peer-timeout", type=float, default=600.0, help="seconds per run [600]")
    parser.add_argument("--venv", default=str(ROOT / ".bench-venvs" / "flower"))
    parser.add_argument("--pfl-venv", default=str(ROOT / ".bench-venvs" / "pfl"))
    parser.add_argument("--pfl-python", default="/usr/bin/python3.11")
    parser.add_argument("--torch-index", default="", help="an extra index for torch's +cpu wheel")
    parser.add_argument("--data-dir", default=str(ROOT / ".bench-venvs" / "data"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--skip-pfl", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS} (round 1 apart, 2..R steady)")
    sizes = [int(s) for s in args.sizes.split(",")]
    dims = [int(d) for d in args.dims.split(",")]
    flower_sizes = {int(s) for s in args.flower_sizes.split(",") if s}
    flower = None if args.skip_flower else ensure_flower(Path(args.venv))
    pfl = (
        None
        if args.skip_pfl
        else ensure_pfl(Path(args.pfl_venv), args.pfl_python, args.torch_index)
    )
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"rounds": args.rounds, "hyper": HYPER, "excludes": EXCLUDES}
    speedups: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for line in _excludes_text():
        print(line, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dandelion-vs-") as tmp:
        work = Path(tmp)
        for d in dims:
            name = f"vs_flower_d{d}_n{max(sizes)}_s{args.seed}.npz"
            table = make_table(data_dir / name, max(sizes), d, args.seed)
            for n in sizes:
                part = make_subtable(table, n, data_dir)
                key = f"n{n}_d{d}"
                ours = run_dandelion(part, n, args.rounds, 3600.0, work)
                row = [ours]
                peers: list[dict[str, Any]] = []
                if flower is not None and n in flower_sizes:
                    peers.append(
                        run_peer("flower", flower, part, n, args.rounds, args.peer_timeout, work)
                    )
                if pfl is not None:
                    peers.append(
                        run_peer("pfl", pfl, part, n, args.rounds, args.peer_timeout, work)
                    )
                row += peers
                summary[f"dandelion_clients_per_s_{key}"] = ours.get("steady_clients_per_s")
                for theirs in peers:
                    peer = theirs["framework"]
                    ratio = speedup(ours, theirs)
                    summary[f"speedup_vs_{peer}_steady_{key}"] = ratio["steady"] if ratio else None
                    speedups[f"{peer}_{key}"] = ratio
                    checks[f"{peer}_{key}"] = arithmetic(ours, theirs)
                for r in row:
                    r["d"] = d
                    r.pop("model", None)
                    results.append(r)
                    print(_line(r), file=sys.stderr, flush=True)
                for peer_key in (f"flower_{key}", f"pfl_{key}"):
                    if peer_key in speedups:
                        print(f"  {peer_key}: {speedups[peer_key]}", file=sys.stderr)
                        print(f"  {peer_key}: {checks[peer_key]}", file=sys.stderr, flush=True)
    summary["speedups"] = speedups
    summary["arithmetic"] = checks
    summary["results"] = results
    print(_table(results))
    if args.json:
        print(json.dumps(summary))


def _excludes_text() -> list[str]:
    return [f"{side}: {text}" for side, text in EXCLUDES.items()]


def _line(r: dict[str, Any]) -> str:
    return json.dumps(r)


def _table(results: list[dict[str, Any]]) -> str:
    """The steady-state figures, one line per framework, N and d (the JSON has all)."""
    head = "framework  d        N       rounds  first round s  steady clients/s  (min-max)"
    lines = [head]
    for r in results:
        spread = r.get("steady_round_clients_per_s") or {}
        rng = f"({spread.get('min')}-{spread.get('max')})" if spread else ""
        lines.append(
            f"{r['framework']:<10} {r['d']:<8} {r['n']:<7} {r['rounds']:<7} "
            f"{r.get('first_round_s')!s:<14} {r.get('steady_clients_per_s')!s:<17} {rng}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
