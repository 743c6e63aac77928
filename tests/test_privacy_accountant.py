"""Accounting: the published reference values, and the CLI against dp-accounting itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from dandelion.cli import main
from dandelion.privacy import (
    RoundEvent,
    compose,
    epsilon,
    epsilon_after,
    rdp_curve,
    rdp_epsilon_classic,
)


def _pld_reference(q: float, z: float, rounds: int, delta: float) -> float:
    """dp-accounting's PLD accountant, called directly with its defaults."""
    acct = pld.PLDAccountant()
    acct.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
    return float(acct.get_epsilon(delta))


@pytest.mark.parametrize(("steps", "published"), [(10_000, 1.26), (40_000, 2.55)])
def test_abadi_2016_values_are_reproduced_with_the_classic_rdp_conversion(
    steps: int, published: float
) -> None:
    """Abadi et al. 2016 (q = 0.01, sigma = 4, δ = 1e-5) report ε ≈ 1.26 after 10,000 steps and
    ε ≈ 2.55 after 40,000 (moments accountant).

    What reproduces them: dp-accounting's RDP of the Poisson-sampled Gaussian at its default
    orders, turned into ε with the classic conversion ε = min over orders alpha of
    rdp(alpha) + log(1/δ)/(alpha - 1) (Mironov 2017, Prop. 3) — the moments accountant's own bound.
    dp-accounting's ``RdpAccountant.get_epsilon`` uses a tighter conversion and its PLD
    accountant is tighter still; both give less than the paper, as they should.
    """
    events = [RoundEvent(0.01, 4.0, steps)]
    orders, curve = rdp_curve(events)
    classic = rdp_epsilon_classic(orders, curve, 1e-5)
    assert classic == pytest.approx(published, rel=0.01)
    tighter = epsilon(events, 1e-5, "rdp")
    tightest = epsilon(events, 1e-5, "pld")
    assert tightest < tighter < classic
    assert tighter < 0.9 * published  # not the published figure: a different conversion


@pytest.mark.parametrize(
    ("q", "z", "rounds", "delta"),
    [
        (0.01, 1.0, 1000, 1e-6),
        (0.1, 1.0, 30, 3.98e-5),
        (0.001, 0.8, 5000, 1e-7),
        (0.05, 2.0, 200, 1e-5),
        (1.0, 5.0, 10, 1e-5),
    ],
)
def test_cli_epsilon_matches_dp_accounting_pld(
    q: float, z: float, rounds: int, delta: float, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["privacy", "epsilon", "--q", str(q), "--noise", str(z), "--rounds", str(rounds)]
    assert main([*args, "--delta", str(delta), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accountant"] == "pld"
    assert (printed["q"], printed["noise_multiplier"], printed["rounds"]) == (q, z, rounds)
    assert printed["epsilon"] == pytest.approx(_pld_reference(q, z, rounds, delta), rel=0.01)


def test_cli_rdp_option_matches_dp_accounting_rdp(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["privacy", "epsilon", "--q", "0.02", "--noise", "1.1", "--rounds", "500"]
    assert main([*args, "--delta", "1e-6", "--accountant", "rdp", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    acct = rdp.RdpAccountant()
    acct.compose(dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.1)), 500)
    assert printed["accountant"] == "rdp"
    assert printed["epsilon"] == pytest.approx(acct.get_epsilon(1e-6), rel=1e-9)


def test_cli_as_a_user_runs_it_prints_one_json_object() -> None:
    args = ["privacy", "epsilon", "--q", "0.01", "--noise", "1.0", "--rounds", "100"]
    result = subprocess.run(
        [sys.executable, "-m", "dandelion", *args, "--delta", "1e-5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["epsilon"] == pytest.approx(_pld_reference(0.01, 1.0, 100, 1e-5), rel=0.01)


@pytest.mark.parametrize(
    ("flag", "value"), [("--q", "0"), ("--q", "1.5"), ("--noise", "0"), ("--delta", "1")]
)
def test_cli_refuses_out_of_range_arguments_naming_them(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = {"--q": "0.1", "--noise": "1.0", "--rounds": "10", "--delta": "1e-5", flag: value}
    argv = ["privacy", "epsilon", *(x for kv in args.items() for x in kv)]
    assert main(argv) == 2
    assert flag in capsys.readouterr().err


def test_cli_dp_ftrl_matches_dp_accountings_tree_events(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["privacy", "epsilon", "--mechanism", "dp_ftrl", "--tree", "8", "--noise", "3"]
    assert main([*args, "--rounds", "15", "--delta", "3.98e-5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    tree = dp_accounting.SingleEpochTreeAggregationDpEvent
    acct.compose(dp_accounting.ComposedDpEvent([tree(3.0, 8), tree(3.0, 7)]))
    assert (printed["mechanism"], printed["accountant"], printed["tree"]) == ("dp_ftrl", "rdp", 8)
    assert printed["epsilon"] == pytest.approx(acct.get_epsilon(3.98e-5), rel=1e-9)
    # Without --tree, or with a tree of 0, it is refused naming the flag.
    assert (
        main(
            [
                "privacy",
                "epsilon",
                "--mechanism",
                "dp_ftrl",
                "--noise",
                "3",
                "--rounds",
                "15",
                "--delta",
                "1e-5",
            ]
        )
        == 2
    )
    assert "--tree" in capsys.readouterr().err
    assert main([*args[:5], "0", *args[6:], "--rounds", "15", "--delta", "1e-5"]) == 2
    assert "--tree" in capsys.readouterr().err


def test_composition_groups_equal_rounds_and_grows_with_rounds() -> None:
    split = [RoundEvent(0.05, 1.0, 3), RoundEvent(0.05, 1.0, 2)]
    assert compose(split) == (RoundEvent(0.05, 1.0, 5),)
    assert epsilon(split, 1e-5) == epsilon_after(0.05, 1.0, 5, 1e-5)
    mixed = [RoundEvent(0.05, 1.0, 5), RoundEvent(0.05, 0.7, 1)]
    assert epsilon(mixed, 1e-5) > epsilon_after(0.05, 1.0, 5, 1e-5)
    values = [epsilon_after(0.05, 1.0, t, 1e-5) for t in (1, 10, 100)]
    assert values == sorted(values) and len(set(values)) == 3
    assert epsilon([], 1e-5) == 0.0


def test_less_noise_or_more_sampling_costs_more() -> None:
    base = epsilon_after(0.01, 1.0, 100, 1e-6)
    assert epsilon_after(0.01, 0.8, 100, 1e-6) > base
    assert epsilon_after(0.02, 1.0, 100, 1e-6) > base
    assert epsilon_after(0.01, 1.0, 100, 1e-8) > base  # a smaller δ asks for a larger ε


@pytest.mark.parametrize(
    "bad", [lambda: RoundEvent(0.0, 1.0), lambda: RoundEvent(0.1, 0.0), lambda: RoundEvent(1.1, 1)]
)
def test_events_outside_their_domain_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        bad()  # type: ignore[operator]


def test_classic_conversion_is_the_formula() -> None:
    # one order: rdp + log(1/δ)/(alpha-1); orders ≤ 1 and infinite values are skipped
    got = rdp_epsilon_classic([0.5, 3.0, 5.0], [0.1, 0.2, math.inf], 1e-3)
    assert got == pytest.approx(0.2 + math.log(1e3) / 2)
