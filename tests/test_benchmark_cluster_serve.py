"""benchmarks/cluster_serve.py, briefly: one SIGKILL of a real ``serve --cluster`` leader
among two shards, and one merge; the JSON it ends with carries the figures docs/benchmarks.md
quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_one_failover_and_one_merge_end_in_one_json_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "cluster_serve.py"),
            *("--shards", "2", "--kills", "1", "--lease-s", "1.0"),
            *("--ks", "2", "--ds", "1000", "--repeats", "1", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < figures["leader_failover_s"] < 1.0 * 4 / 3 + 1.0  # a lease, a retry, slack
    assert figures["leader_failover_s_min"] == figures["leader_failover_s_max"]
    assert figures["merge_s_k2_d1000"] > 0
