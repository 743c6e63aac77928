"""benchmarks/cluster.py, briefly: a 1-shard and a 2-shard cluster of real ``serve --cluster``
processes, a few tiny rounds each, a connection ramp to a small open-files limit and one leader
kill; the JSON it ends with carries the figures docs/benchmarks.md and docs/sizing.md quote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

FD_LIMIT = 200


def test_a_tiny_run_ends_in_one_json_line_with_the_three_figures() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "cluster.py"),
            *("--clients", "4", "--d", "1000", "--repeats", "2", "--block-rounds", "1"),
            *("--fd-limit", str(FD_LIMIT), "--batch", "20", "--hold-s", "0.2"),
            *("--kills", "1", "--lease-s", "1.0", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["ingest_2_vs_1"] > 0
    assert figures["ingest_2_vs_1_spread"]["n"] == 2
    # Each shard was filled to its open-files limit and refused the next connection.
    for side, shards in (("connections_1", 1), ("connections_2", 2)):
        assert figures[side]["refused"] is True
        assert len(figures[side]["per_shard"]) == shards
        assert all(0 < held < FD_LIMIT for held in figures[side]["per_shard"])
        assert figures[side]["alive"] == figures[side]["opened"]
    assert 1.5 < figures["connections_2_vs_1"] < 2.5
    assert 0 < figures["leader_failover_s"] < 1.0 * 4 / 3 + 1.0  # a lease, a retry, slack
    assert len(figures["load_average"]) >= 3
