"""The DP demo benchmark, run small: it drives the real coordinator and sessions, the coordinator
does the sampling (Poisson coins, DP-FTRL's separation), its ε comes from the coordinator's
ledger and agrees with dp-accounting for the events composed, and noise is really added."""

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
    runs = out["dp_runs"]
    assert [(r["mechanism"], r["noise_multiplier"]) for r in runs] == [
        ("poisson", 1.0),
        ("poisson", 2.0),
        ("dp_ftrl", 3.0),
    ]
    for run in runs:
        assert run["delta"] == pytest.approx(500**-1.1)
        eps = run["epsilon_per_round"]
        assert len(eps) == 3 and eps == sorted(eps) and eps[0] > 0
        assert 0.5 < run["final_accuracy"] <= 1.0
        assert run["ratio"] == pytest.approx(
            run["final_accuracy"] / out["non_private_accuracy"], abs=1e-4
        )
    for run in runs[:2]:
        assert len(set(run["epsilon_per_round"])) == 3
        expected = epsilon_after(0.1, run["noise_multiplier"], 3, out["delta"])
        assert run["epsilon"] == pytest.approx(expected, rel=1e-9)
        for clip, std in zip(run["clip_norm_per_round"], run["noise_std_per_round"], strict=True):
            assert std >= run["noise_multiplier"] * clip > 0
        assert run["clip_norm_per_round"][0] == 1.0
        # The coordinator's coins, not a cap: the count varies around q x population = 50.
        assert all(20 <= n <= 90 for n in run["reports_per_round"]), run["reports_per_round"]
    assert runs[1]["epsilon"] < runs[0]["epsilon"]
    ftrl = runs[2]
    assert ftrl["min_separation"] == 8 and ftrl["accountant"] == "rdp"
    assert ftrl["noise_std_per_round"] == [3.0] * 3  # z C per tree node, C fixed at 1
    assert ftrl["reports_per_round"] == [50] * 3
    # No worker twice within 8 rounds: in 3 rounds an eager worker takes part at most once.
    assert ftrl["participation"]["eager"] <= 1 / 3
    # First come: eager workers take part far more often than lazy ones without privacy.
    assert out["non_private_participation"]["eager"] > 2 * out["non_private_participation"]["lazy"]
    import dp_accounting
    from dp_accounting import rdp

    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    acct.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(3.0, 3))
    assert ftrl["epsilon"] == pytest.approx(acct.get_epsilon(out["delta"]), rel=1e-9)
    assert svg.read_text().startswith("<svg")
