"""DP-FTRL's maths: tree-aggregation noise from a key, its accounting by dp-accounting, the
budget rule under ``mechanism = "dp_ftrl"`` and the release (Kairouz et al. 2021)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import secrets

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp

from dandelion.privacy import (
    PrivacyConfig,
    PrivacyLedger,
    RoundEvent,
    TreeNoise,
    ftrl_epsilon,
    ftrl_release,
    position,
)

SECRET = b"k" * 32


def _popcount(t: int) -> int:
    return bin(t).count("1")


def _ftrl_config(z: float = 2.0, *, n: int = 10, budget: float = 100.0) -> PrivacyConfig:
    raw = {
        "population": 10_000,
        "noise_multiplier": z,
        "epsilon": budget,
        "mechanism": "dp_ftrl",
        "min_separation": 5,
    }
    return PrivacyConfig.from_dict(raw, expected_reports=n)


# --- the noise -------------------------------------------------------------------------------


def test_prefix_noise_std_is_std_times_sqrt_popcount_over_many_secrets() -> None:
    d, std, keys = 20_000, 1.5, 10  # 200,000 draws per prefix: the std is known to ~0.2 %
    draws: dict[int, list[np.ndarray]] = {t: [] for t in range(1, 9)}
    for _ in range(keys):
        noise = TreeNoise(secrets.token_bytes(32), d, std)
        for t in draws:
            draws[t].append(noise.prefix_noise(0, t))
    for t, values in draws.items():
        sample = np.concatenate(values)
        expected = std * math.sqrt(_popcount(t))
        # t = 3, 5, 6, 7 would be off by 13-50 % under sqrt(t) or fresh noise per step.
        assert sample.std() == pytest.approx(expected, rel=0.02), t
        assert abs(sample.mean()) < 5 * expected / math.sqrt(sample.size), t
    # A node is reused by every prefix that contains it: [1, 6] = [1, 4] + [5, 6], so prefixes
    # 4 and 6 share one of their 1 and 2 nodes (correlation 1/sqrt(2)); 4 and 5 share [1, 4].
    p4, p5, p6 = (np.concatenate(draws[t]) for t in (4, 5, 6))
    assert np.corrcoef(p4, p6)[0, 1] == pytest.approx(1 / math.sqrt(2), abs=0.01)
    assert np.corrcoef(p4, p5)[0, 1] == pytest.approx(1 / math.sqrt(2), abs=0.01)
    # ... and what prefix 5 adds to prefix 4 is the fresh node [5, 5], independent of it.
    assert abs(np.corrcoef(p4, p5 - p4)[0, 1]) < 0.01


def test_step_noise_telescopes_to_the_prefix_and_a_new_tree_starts_from_zero() -> None:
    noise = TreeNoise(SECRET, 64, 2.0)
    for tree in (0, 1, 7):
        np.testing.assert_array_equal(noise.prefix_noise(tree, 0), np.zeros(64))
        running = np.zeros(64)
        for t in range(1, 33):
            step = noise.step_noise(tree, t)
            diff = noise.prefix_noise(tree, t) - noise.prefix_noise(tree, t - 1)
            np.testing.assert_allclose(step, diff, rtol=0, atol=1e-12)
            running += step
            np.testing.assert_allclose(running, noise.prefix_noise(tree, t), rtol=0, atol=1e-12)
    # The restart: tree 1's first prefix is one fresh node, not tree 0's noise carried on.
    np.testing.assert_array_equal(noise.step_noise(1, 1), noise.prefix_noise(1, 1))
    assert not np.allclose(noise.prefix_noise(1, 1), noise.prefix_noise(0, 1))
    assert not np.allclose(noise.prefix_noise(1, 5), noise.prefix_noise(0, 5))


def test_same_secret_same_noise_bytes_other_secret_other_noise() -> None:
    a, b = TreeNoise(SECRET, 100, 1.0), TreeNoise(SECRET, 100, 1.0)
    other = TreeNoise(b"j" + SECRET[1:], 100, 1.0)
    for tree, t in [(0, 1), (0, 6), (3, 13)]:
        assert a.prefix_noise(tree, t).tobytes() == b.prefix_noise(tree, t).tobytes()
        assert a.step_noise(tree, t).tobytes() == b.step_noise(tree, t).tobytes()
        assert not np.allclose(a.prefix_noise(tree, t), other.prefix_noise(tree, t))
    # The documented derivation: node (tree 0, level 0, position 0) is prefix [1, 1].
    digest = hmac.new(SECRET, b"0:0:0", hashlib.sha256).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "big")))
    assert a.prefix_noise(0, 1).tobytes() == rng.normal(0.0, 1.0, 100).tobytes()
    assert a.prefix_noise(0, 1).dtype == np.float64
    assert SECRET.hex() not in repr(a) and "k" * 8 not in repr(a)


def test_the_global_numpy_generator_is_untouched() -> None:
    state = np.random.get_state()
    TreeNoise(SECRET, 10, 1.0).prefix_noise(2, 7)
    after = np.random.get_state()
    assert state[0] == after[0] and (state[1] == after[1]).all() and state[2:] == after[2:]


@pytest.mark.parametrize(
    ("args", "call"),
    [
        ((b"short", 4, 1.0), None),
        ((SECRET, 0, 1.0), None),
        ((SECRET, 4, -1.0), None),
        ((SECRET, 4, math.nan), None),
        ((SECRET, 4, 1.0), ("step_noise", 0, 0)),
        ((SECRET, 4, 1.0), ("prefix_noise", -1, 2)),
        ((SECRET, 4, 1.0), ("prefix_noise", 0, -1)),
    ],
)
def test_noise_arguments_outside_their_domain_are_refused(
    args: tuple[bytes, int, float], call: tuple[str, int, int] | None
) -> None:
    with pytest.raises(ValueError):  # noqa: PT012 - construction or call, whichever is bad
        noise = TreeNoise(*args)
        if call is not None:
            getattr(noise, call[0])(call[1], call[2])


def test_position_cuts_released_rounds_into_trees() -> None:
    got = [position(k, 5) for k in range(1, 12)]
    assert got == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)] + [(1, s) for s in range(1, 6)] + [
        (2, 1)
    ]
    assert position(1, 1) == (0, 1) and position(3, 1) == (2, 1)
    for bad in [(0, 5), (1, 0), (-1, 5)]:
        with pytest.raises(ValueError):
            position(*bad)


# --- the accounting --------------------------------------------------------------------------


def _direct(z: float, tree_size: int, rounds: int, delta: float) -> float:
    """dp-accounting by hand: one tree event composed per tree, one at a time."""
    acct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
    left = rounds
    while left > 0:
        steps = min(tree_size, left)
        acct.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(z, steps))
        left -= steps
    return float(acct.get_epsilon(delta))


@pytest.mark.parametrize(
    ("z", "tree_size", "rounds", "delta"),
    [
        (4.0, 5, 15, 1e-5),
        (1.0, 5, 7, 1e-5),
        (2.5, 8, 20, 1e-6),
        (0.8, 1, 3, 1e-4),
        (3.0, 16, 5, 1e-5),
    ],
)
def test_ftrl_epsilon_is_dp_accountings(
    z: float, tree_size: int, rounds: int, delta: float
) -> None:
    assert ftrl_epsilon(z, tree_size, rounds, delta) == pytest.approx(
        _direct(z, tree_size, rounds, delta), rel=1e-12
    )


def test_ftrl_epsilon_grows_with_rounds_and_falls_with_noise() -> None:
    assert ftrl_epsilon(4.0, 5, 0, 1e-5) == 0.0
    series = [ftrl_epsilon(4.0, 5, r, 1e-5) for r in range(1, 21)]
    assert all(a <= b for a, b in itertools.pairwise(series))
    # Each new tree costs: strictly more after rounds 5k + 1 than after 5k.
    assert all(series[5 * k] > series[5 * k - 1] for k in range(1, 4))
    # Within a tree the charge is by depth, ceil(log2(steps + 1)): 2 and 3 steps cost the same.
    assert series[1] == series[2] < series[3]
    by_z = [ftrl_epsilon(z, 5, 15, 1e-5) for z in (1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(by_z))


def test_the_planning_figure_is_finite_and_below_ten(capsys: pytest.CaptureFixture[str]) -> None:
    eps = ftrl_epsilon(4.0, 5, 15, 1e-5)
    with capsys.disabled():
        print(f"\nDP-FTRL z = 4, tree 5, 15 rounds, delta = 1e-5: epsilon = {eps:.4f}")
    assert math.isfinite(eps) and 0 < eps < 10


@pytest.mark.parametrize(
    "bad", [(0.0, 5, 1, 1e-5), (1.0, 0, 1, 1e-5), (1.0, 5, -1, 1e-5), (1.0, 5, 1, 1.0)]
)
def test_ftrl_epsilon_refuses_arguments_outside_their_domain(
    bad: tuple[float, int, int, float],
) -> None:
    with pytest.raises(ValueError):
        ftrl_epsilon(*bad)


# --- the budget rule -------------------------------------------------------------------------


def test_the_ledger_refuses_the_round_that_would_pass_the_budget_under_dp_ftrl() -> None:
    probe = _ftrl_config(4.0, n=100)
    fits = ftrl_epsilon(4.0, 5, 6, probe.delta)
    over = ftrl_epsilon(4.0, 5, 7, probe.delta)
    assert fits < over
    config = _ftrl_config(4.0, n=100, budget=round((fits + over) / 2, 6))
    assert config.ftrl and config.min_separation == 5
    ledger = PrivacyLedger(config)
    released = 0
    while (check := ledger.check_next()).allowed:
        assert check.after == ftrl_epsilon(4.0, 5, released + 1, config.delta)
        event = ledger.next_event()
        assert event == RoundEvent(1.0, 4.0)
        ledger.record(event, check.after)
        released += 1
        assert released < 50, "the budget was never reached"
    assert released == 6
    assert check.spent == fits and check.after == over and check.rounds_released == 6
    assert "budget exhausted" in check.reason
    # A restarted coordinator rebuilds the ledger from its (q, z, ε) rows and refuses again.
    rows = [
        (e.q, e.z, ftrl_epsilon(4.0, 5, i + 1, config.delta)) for i, e in enumerate(ledger.events)
    ]
    again = PrivacyLedger.from_entries(config, rows).check_next()
    assert not again.allowed and again.after == over and again.spent == fits


# --- the release -----------------------------------------------------------------------------


def test_ftrl_release_is_unbiased_and_reports_the_node_std() -> None:
    config = _ftrl_config(2.0, n=10)
    clip, d, draws = 0.5, 40, 3000  # node std z C = 1; mean's std 1 / 10 / sqrt(3000) = 0.0018
    total = np.linspace(-3.0, 5.0, d).astype(np.float32)
    means = []
    for _ in range(draws):
        noise = TreeNoise(secrets.token_bytes(32), d, 2.0 * clip)
        out = ftrl_release(config, total, clip, noise, 0, 1)
        means.append(out.mean)
    assert out.mean.dtype == np.float32 and out.mean.shape == (d,)
    assert out.noise_std == 1.0 and out.clip_norm == clip and out.next_clip_norm == clip
    assert out.unclipped_fraction is None
    assert out.metrics() == {"clip_norm": clip, "noise_std": 1.0}
    average = np.mean(means, axis=0)
    np.testing.assert_allclose(average, total / 10, rtol=0, atol=6 * 0.1 / math.sqrt(draws))
    assert np.std(np.asarray(means) * 10, axis=0).mean() == pytest.approx(1.0, rel=0.05)


def test_a_tree_of_releases_telescopes_to_the_noisy_prefix_sums() -> None:
    config = _ftrl_config(2.0, n=10)
    clip, d = 0.5, 30
    noise = TreeNoise(SECRET, d, 2.0 * clip)
    rng = np.random.default_rng(0)
    sums: dict[int, np.ndarray] = {}
    totals: dict[int, np.ndarray] = {}
    for k in range(1, 11):  # two trees of 5
        tree, step = position(k, 5)
        total = rng.normal(0.0, 3.0, d).astype(np.float32)
        out = ftrl_release(config, total, clip, noise, tree, step)
        sums[tree] = sums.get(tree, np.zeros(d)) + out.mean.astype(np.float64) * 10
        totals[tree] = totals.get(tree, np.zeros(d)) + total
        # float32 means: one rounding of a value of size ~3 per round.
        np.testing.assert_allclose(
            sums[tree] - totals[tree], noise.prefix_noise(tree, step), rtol=0, atol=1e-5
        )
    assert not np.allclose(sums[1] - totals[1], sums[0] - totals[0])


def test_ftrl_release_refuses_a_mismatched_noise_or_mechanism() -> None:
    config = _ftrl_config(2.0, n=10)
    total = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="z x clip_norm"):
        ftrl_release(config, total, 0.5, TreeNoise(SECRET, 4, 2.0), 0, 1)
    with pytest.raises(ValueError, match="values"):
        ftrl_release(config, total, 0.5, TreeNoise(SECRET, 5, 1.0), 0, 1)
    poisson = PrivacyConfig.from_dict(
        {"population": 10_000, "noise_multiplier": 2.0, "epsilon": 10.0}, expected_reports=10
    )
    with pytest.raises(ValueError, match="dp_ftrl"):
        ftrl_release(poisson, total, 0.5, TreeNoise(SECRET, 4, 1.0), 0, 1)
