"""The DP demo benchmark, run small: it drives the real coordinator and sessions, its ε comes
from the coordinator's ledger and agrees with the accountant, and noise is really added."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dandelion.privacy import epsilon_after

ROOT = Path(__file__).resolve().parent.parent


def test_dp_demo_runs_small_and_reports_the_ledgers_epsilon(tmp_path: Path) -> None:
    svg = tmp_path / "chart.svg"
    args = ["--population", "500", "--per-round", "50", "--rounds", "3", "--test-users", "30"]
    script = str(ROOT / "benchmarks" / "dp_demo.py")
    noise = ["--noise", "1.0", "2.0", "--json", "--svg", str(svg)]
    result = subprocess.run(
        [sys.executable, script, *args, *noise],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["q"] == pytest.approx(0.1)
    assert out["delta"] == pytest.approx(500**-1.1)
    assert len(out["non_private_accuracy_per_round"]) == 3
    assert [r["noise_multiplier"] for r in out["dp_runs"]] == [1.0, 2.0]
    for run in out["dp_runs"]:
        eps = run["epsilon_per_round"]
        assert len(eps) == 3 and eps == sorted(eps) and len(set(eps)) == 3
        rounds = len(run["accuracy_per_round"])
        expected = epsilon_after(0.1, run["noise_multiplier"], rounds, out["delta"])
        assert run["epsilon"] == pytest.approx(expected, rel=1e-9)
        for clip, std in zip(run["clip_norm_per_round"], run["noise_std_per_round"], strict=True):
            assert std >= run["noise_multiplier"] * clip > 0
        assert run["clip_norm_per_round"][0] == 1.0
        assert 0.5 < run["final_accuracy"] <= 1.0
    assert out["dp_runs"][1]["epsilon"] < out["dp_runs"][0]["epsilon"]
    assert svg.read_text().startswith("<svg")
