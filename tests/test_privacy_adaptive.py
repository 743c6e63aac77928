"""Adaptive clipping: C converges to the median update norm of a synthetic population, and it
does not when the unclipped bit is inverted (so these tests would catch an inverted bit)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dandelion.privacy import PrivacyConfig, next_clip_norm, observed_bit, release

from .dp_helpers import close, dp_config, feed, new_round

MEDIAN = 3.0


def _norms(rng: np.random.Generator, n: int) -> np.ndarray:
    """A cohort's update norms: log-normal around MEDIAN, spread like real users' updates."""
    return MEDIAN * np.exp(rng.normal(0.0, 0.6, size=n))


def _run_maths(
    start: float, bit: Callable[[np.ndarray, float], np.ndarray], rounds: int = 120
) -> list[float]:
    goal = 1000
    config = PrivacyConfig.from_dict(
        {
            "population": 100_000,
            "noise_multiplier": 1.0,
            "epsilon": 10.0,
            "clipping": "adaptive",
        },
        expected_reports=goal,
    )
    rng = np.random.default_rng(5)
    clip, path = start, []
    for _ in range(rounds):
        norms = _norms(rng, int(rng.poisson(goal)))
        bits = int(bit(norms, clip).sum())
        out = release(config, np.zeros(4, np.float32), bits, norms.size, clip, rng)
        clip = out.next_clip_norm
        path.append(clip)
    return path


def _within(path: list[float]) -> bool:
    return abs(path[-1] - MEDIAN) <= 0.15 * MEDIAN


@pytest.mark.parametrize("start", [0.05, 60.0])
def test_the_clip_norm_converges_to_the_median_norm(start: float) -> None:
    path = _run_maths(start, lambda norms, c: norms <= c)
    assert _within(path), path[-10:]
    tail = np.array(path[-30:])
    assert abs(tail.mean() - MEDIAN) <= 0.05 * MEDIAN


@pytest.mark.parametrize("start", [0.05, 3.0, 60.0])
def test_an_inverted_bit_drives_the_clip_norm_away(start: float) -> None:
    path = _run_maths(start, lambda norms, c: norms > c)
    assert not _within(path)
    assert path[-1] < MEDIAN / 10 or path[-1] > MEDIAN * 10


def test_the_geometric_step_goes_the_right_way() -> None:
    assert next_clip_norm(2.0, 0.9, 0.5, 0.2) == pytest.approx(2.0 * np.exp(-0.2 * 0.4))
    assert next_clip_norm(2.0, 0.1, 0.5, 0.2) > 2.0 > next_clip_norm(2.0, 0.9, 0.5, 0.2)
    assert next_clip_norm(2.0, 0.5, 0.5, 0.2) == 2.0


def test_the_server_decides_the_bit_wherever_the_norm_tells() -> None:
    c = 2.0
    assert observed_bit(1.0, c, claimed=False) is True  # inside: it was not clipped
    assert observed_bit(5.0, c, claimed=True) is False  # outside: longer than C
    assert observed_bit(2.0, c, claimed=False) is False  # on the sphere: the worker's word
    assert observed_bit(2.0 * (1 - 5e-4), c, claimed=True) is True
    assert observed_bit(float("nan"), c, claimed=True) is False


def _run_rounds(rounds: int, *, worker_clips: bool, invert_claim: bool) -> list[float]:
    """The real round path: workers clip to this round's C (or not), claim their bit (or its
    opposite), the coordinator's RoundState adds, closes and moves C."""
    d, goal = 16, 200
    privacy = {
        "population": 20_000,
        "noise_multiplier": 1.0,
        "epsilon": 10.0,
        "clipping": "adaptive",
    }
    config = dp_config(d - 1, goal=goal, clip=0.2, privacy=privacy)
    rng = np.random.default_rng(11)
    clip, path = config.clip_norm, []
    for _ in range(rounds):
        rnd = new_round(config, clip_norm=clip)
        for norm in _norms(rng, goal):
            direction = rng.normal(size=d)
            delta = direction * (norm / np.linalg.norm(direction))
            within = bool(norm <= clip)
            if worker_clips and not within:
                delta *= clip / norm
            feed(rnd, delta, unclipped=within != invert_claim)
        assert close(rnd) is not None and rnd.release is not None
        clip = rnd.release.next_clip_norm
        path.append(clip)
    return path


def test_rounds_with_honest_bits_converge_to_the_median() -> None:
    assert _within(_run_rounds(60, worker_clips=True, invert_claim=False))


def test_rounds_with_inverted_bits_from_clipping_workers_do_not_converge() -> None:
    # A clipped update arrives on the sphere, where only the worker's bit can tell.
    path = _run_rounds(60, worker_clips=True, invert_claim=True)
    assert not _within(path) and path[-1] < MEDIAN / 10


def test_rounds_with_inverted_bits_from_unclipped_updates_still_converge() -> None:
    # Off the sphere the server observes the norm itself: a wrong claim changes nothing.
    assert _within(_run_rounds(60, worker_clips=False, invert_claim=True))


class _Silent(np.random.Generator):
    """A generator whose normal() draws zeros: the noiseless release, to check the query."""

    def normal(self, loc: object = 0.0, scale: object = 1.0, size: object = None) -> object:
        return np.zeros(size)  # type: ignore[call-overload]


def test_the_bit_count_is_centred_so_one_user_moves_it_by_a_half() -> None:
    n = 10
    config = PrivacyConfig.from_dict(
        {
            "population": 1000,
            "noise_multiplier": 1.0,
            "epsilon": 5.0,
            "clipping": "adaptive",
            "bit_noise_std": 1.0,
        },
        expected_reports=n,
    )

    def fraction(bits: int, reports: int) -> float:
        out = release(
            config, np.zeros(2, np.float32), bits, reports, 1.0, _Silent(np.random.PCG64())
        )
        assert out.unclipped_fraction is not None
        return out.unclipped_fraction

    assert fraction(7, 10) == pytest.approx(0.7)  # n reports: the plain fraction
    base = fraction(4, 8)
    # one more user, under C or over it: the centred sum moves by +1/2 or -1/2, never by 1
    assert (fraction(5, 9) - base) * n == pytest.approx(0.5)
    assert (fraction(4, 9) - base) * n == pytest.approx(-0.5)
