"""DP-FedAvg's noise: its scale, its fixed denominator, and where its randomness comes from."""

from __future__ import annotations

import numpy as np
import pytest

import dandelion.privacy.noise as noise_module
from dandelion.privacy import noisy_mean, release, secure_generator

from .dp_helpers import close, dp_config, feed, new_round


def test_noise_std_is_z_times_clip_over_the_denominator_over_many_draws() -> None:
    z, clip, goal, d = 1.3, 2.5, 1000, 20_000
    expected = z * clip / goal
    total = np.zeros(d, dtype=np.float32)
    draws = np.stack([noisy_mean(total, z * clip, goal, secure_generator()) for _ in range(25)])
    # 500,000 draws: the sample std is within 0.2 % of the true one with overwhelming odds.
    assert draws.std() == pytest.approx(expected, rel=0.03)
    assert abs(draws.mean()) < 5 * expected / np.sqrt(draws.size)


def test_a_closed_round_divides_by_the_goal_not_by_the_reports_and_adds_z_c_noise() -> None:
    d, goal, clip, z = 40_000, 10, 1.0, 0.1
    privacy = {"population": 1000, "noise_multiplier": z, "epsilon": 1e6}
    config = dp_config(d - 1, goal=goal, clip=clip, privacy=privacy)
    rnd = new_round(config)
    direction = np.full(d, 1 / np.sqrt(d))
    reports = 4
    for _ in range(reports):
        feed(rnd, 0.5 * direction)  # norm 0.5: not clipped
    mean = close(rnd)
    assert mean is not None and rnd.release is not None
    noise = mean.astype(np.float64) - reports * 0.5 * direction / goal
    assert noise.std() == pytest.approx(z * clip / goal, rel=0.03)
    # Along the updates' direction the release is 4 x 0.5 / 10 = 0.2 plus N(0, 0.01²);
    # dividing by the 4 reports would give 0.5, thirty noise deviations away.
    assert float(mean @ direction) == pytest.approx(0.2, abs=5 * z * clip / goal)
    assert rnd.release.noise_std == pytest.approx(z * clip)
    assert rnd.metrics() == {"clip_norm": clip, "noise_std": pytest.approx(z * clip)}


def test_adaptive_clipping_noises_the_update_with_the_split_multiplier() -> None:
    d, goal = 40_000, 20
    privacy = {
        "population": 20_000,
        "noise_multiplier": 0.9,
        "epsilon": 5.0,
        "clipping": "adaptive",
        "bit_noise_std": 0.5,
    }
    config = dp_config(d - 1, goal=goal, clip=2.0, privacy=privacy)
    assert config.privacy is not None
    z_delta = config.privacy.update_noise_multiplier
    assert z_delta == pytest.approx((0.9**-2 - 1.0**-2) ** -0.5)
    rnd = new_round(config)
    feed(rnd, np.zeros(d))
    mean = close(rnd)
    assert mean is not None
    assert mean.std() == pytest.approx(z_delta * 2.0 / goal, rel=0.03)
    assert rnd.release is not None and rnd.release.unclipped_fraction is not None


def test_a_round_never_touches_the_global_numpy_generator() -> None:
    np.random.seed(1234)
    before = np.random.get_state()
    rnd = new_round(dp_config(99))
    feed(rnd, np.ones(100) * 0.01)
    assert close(rnd) is not None
    after = np.random.get_state()
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_each_round_gets_a_fresh_generator_seeded_by_the_os(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = secure_generator().normal(size=8)
    b = secure_generator().normal(size=8)
    assert not np.array_equal(a, b)
    calls: list[int] = []

    def fake_randbits(k: int) -> int:
        calls.append(k)
        return 42

    monkeypatch.setattr(noise_module.secrets, "randbits", fake_randbits)
    c, d = secure_generator().normal(size=8), secure_generator().normal(size=8)
    assert calls == [128, 128]  # 128 bits from the OS's CSPRNG per generator
    assert np.array_equal(c, d)  # ... and nothing else goes into the seed


def test_two_rounds_with_the_same_reports_release_different_noise() -> None:
    config = dp_config(999)
    outs = []
    for _ in range(2):
        rnd = new_round(config)
        feed(rnd, np.full(1000, 0.001))
        mean = close(rnd)
        assert mean is not None
        outs.append(mean)
    assert not np.array_equal(outs[0], outs[1])


def test_release_with_zero_noise_is_the_sum_over_the_goal() -> None:
    config = dp_config(3, goal=4)
    assert config.privacy is not None
    total = np.array([4.0, 8.0, 0.0, -4.0], dtype=np.float32)

    class Silent(np.random.Generator):
        def normal(self, loc: object = 0.0, scale: object = 1.0, size: object = None) -> object:
            return np.zeros(size)  # type: ignore[call-overload]

    out = release(config.privacy, total, 0, 2, 1.0, Silent(np.random.PCG64(0)))
    assert out.mean.tolist() == [1.0, 2.0, 0.0, -1.0]
