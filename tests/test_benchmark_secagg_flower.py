"""How benchmarks/secagg.py reads Flower's SecAgg+ side: the ratios both ways, and a Flower run
stopped at its timeout gives no figure rather than a wrong one."""

from __future__ import annotations

from typing import Any

from benchmarks.secagg import flower_figures

OURS: dict[str, Any] = {"n": 100, "d": 1000, "coordinator_s": 0.5}


def test_a_finished_flower_round_gives_both_ratios() -> None:
    printed = {
        "timed_out": False,
        "ran_s": 40.0,
        "startup": {"launch_to_ready_s": 30.0},
        "round": {"wall_s": 8.0, "server_s": 2.0, "max_abs_error": 1e-8, "results": 90},
        "summary": {"client_s": 0.05, "client_sent_bytes": 16000.0},
    }
    figures = flower_figures(OURS, printed)
    assert figures["coordinator_speedup_vs_flower"] == 4.0  # Flower's 2.0 s over our 0.5 s
    assert figures["coordinator_vs_flower"] == 0.25  # ours over Flower's, the key
    assert figures["flower_startup_s"] == 30.0
    assert figures["flower_client_s"] == 0.05
    assert figures["flower_error"] is None


def test_a_stopped_flower_run_has_no_ratio_and_says_how_long_it_ran() -> None:
    printed = {"timed_out": True, "ran_s": 900.4, "startup": {"launch_to_ready_s": 33.0}}
    figures = flower_figures(OURS, printed)
    assert figures["flower_timed_out"] is True
    assert figures["flower_ran_s"] == 900.4
    assert figures["flower_startup_s"] == 33.0  # what ran is kept
    assert figures["flower_coordinator_s"] is None
    assert figures["coordinator_speedup_vs_flower"] is None
    assert figures["coordinator_vs_flower"] is None
