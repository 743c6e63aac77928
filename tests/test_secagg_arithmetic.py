"""Secure aggregation's standard-library arithmetic: Shamir over GF(2^521 - 1), the fixed-point
encoding, mod-2^32 vectors, the neighbourhood graph and the round's parameters."""

from __future__ import annotations

import math
import random
import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dandelion.crypto import NumpyMod32
from dandelion.protocol.secagg import (
    PRIME,
    ReconstructionError,
    SecAggConfigError,
    SecAggParams,
    SecAggViolation,
    StdlibMod32,
    Timeouts,
    check_range,
    decode_sum,
    default_degree,
    default_scale_bits,
    default_threshold,
    encode,
    neighbourhoods,
    reconstruct,
    round_salt,
    split,
)
from dandelion.protocol.secagg.graph import permutation, uniform_below
from dandelion.protocol.secagg.shamir import random_coefficient
from dandelion.protocol.secagg.vectors import check_vector_bytes

SALT = round_salt("demo", 3, bytes(range(32)))


# -- Shamir ------------------------------------------------------------------------------------


def test_any_t_shares_rebuild_the_secret_and_t_minus_one_do_not() -> None:
    secret = secrets.token_bytes(32)
    shares = split(secret, 4, range(1, 8), secrets.token_bytes)
    assert set(shares) == set(range(1, 8))
    assert all(len(s) == 66 for s in shares.values())
    rng = random.Random(5)
    for _ in range(10):
        subset = rng.sample(sorted(shares), 4)
        assert reconstruct({x: shares[x] for x in subset}, 4) == secret
    with pytest.raises(ReconstructionError, match="3 shares, 4 needed"):
        reconstruct({x: shares[x] for x in (1, 2, 3)}, 4)


def test_t_minus_one_shares_fit_every_secret() -> None:
    """Perfect secrecy, checked on its mechanism: for 2-of-n, one share plus any candidate
    secret defines a line, so that share says nothing of which secret it came from."""
    secret = secrets.token_bytes(32)
    share = int.from_bytes(split(secret, 2, [1, 2], secrets.token_bytes)[1], "big")
    other = int.from_bytes(secrets.token_bytes(32), "big")
    slope = (share - other) % PRIME  # the line through (0, other) and (1, share)
    second = ((other + 2 * slope) % PRIME).to_bytes(66, "big")
    rebuilt = reconstruct({1: share.to_bytes(66, "big"), 2: second}, 2)
    assert rebuilt == other.to_bytes(32, "big")


def test_extra_shares_are_checked_against_the_polynomial() -> None:
    secret = secrets.token_bytes(32)
    shares = split(secret, 3, range(1, 6), secrets.token_bytes)
    assert reconstruct(shares, 3) == secret
    bad = dict(shares)
    bad[5] = ((int.from_bytes(bad[5], "big") + 1) % PRIME).to_bytes(66, "big")
    with pytest.raises(ReconstructionError, match="x = 5 disagrees"):
        reconstruct(bad, 3)


def test_malformed_shares_and_splits_are_refused() -> None:
    shares = split(bytes(32), 2, [1, 2, 3], secrets.token_bytes)
    with pytest.raises(ReconstructionError, match="not an element"):
        reconstruct({1: shares[1], 2: shares[2][:-1]}, 2)
    with pytest.raises(ReconstructionError, match="not an element"):
        reconstruct({1: shares[1], 2: PRIME.to_bytes(66, "big")}, 2)
    # Two shares of a degree-1 polynomial through a point far above 2^256 at zero.
    big = [((1 << 300) + 7 * x) % PRIME for x in (1, 2)]
    with pytest.raises(ReconstructionError, match="not a 32-byte secret"):
        reconstruct({1: big[0].to_bytes(66, "big"), 2: big[1].to_bytes(66, "big")}, 2)
    with pytest.raises(SecAggConfigError, match="32 bytes"):
        split(bytes(31), 2, [1, 2], secrets.token_bytes)
    with pytest.raises(SecAggConfigError, match="distinct positive"):
        split(bytes(32), 2, [1, 1, 2], secrets.token_bytes)
    with pytest.raises(SecAggConfigError, match="distinct positive"):
        split(bytes(32), 2, [0, 1], secrets.token_bytes)
    with pytest.raises(SecAggConfigError, match="between 1 and 2"):
        split(bytes(32), 3, [1, 2], secrets.token_bytes)


def test_a_coefficient_equal_to_p_is_drawn_again() -> None:
    draws = iter([b"\xff" * 66, (5).to_bytes(66, "big")])  # 2^528-1 masks to p itself
    assert random_coefficient(lambda n: next(draws)) == 5


# -- fixed point -------------------------------------------------------------------------------


def test_encoding_rounds_clamps_and_wraps_negative_values() -> None:
    raw = encode([0.0, 1.0, -1.0, 0.3, 100.0, -100.0, 2**-9, -(2**-9)], 2.0, 8)
    values = np.frombuffer(raw, dtype="<u4").tolist()
    assert values == [0, 256, 2**32 - 256, 77, 512, 2**32 - 512, 1, 0]
    assert decode_sum(raw, 8) == [0.0, 1.0, -1.0, 77 / 256, 2.0, -2.0, 1 / 256, 0.0]


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(SecAggConfigError, match="value 1 is not finite"):
        encode([0.0, math.nan], 1.0, 4)
    with pytest.raises(SecAggConfigError, match="not finite"):
        encode([math.inf], 1.0, 4)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-20, 20, allow_nan=False), min_size=3, max_size=3),
        min_size=1,
        max_size=40,
    )
)
def test_the_sum_of_encodings_decodes_to_the_rounded_sum(updates: list[list[float]]) -> None:
    clip, n = 10.0, 1000
    bits = default_scale_bits(n, clip)
    total = StdlibMod32().zeros(3)
    for u in updates:
        StdlibMod32().add_into(total, encode(u, clip, bits))
    got = decode_sum(total, bits)
    for col in range(3):
        exact = sum(min(max(u[col], -clip), clip) for u in updates)
        assert abs(got[col] - exact) <= len(updates) * 2 ** -(bits + 1) + 1e-9


def test_default_scale_bits_is_the_largest_that_cannot_wrap() -> None:
    assert default_scale_bits(1000, 10.0) == 17
    check_range(1000, 10.0, 17)
    with pytest.raises(SecAggConfigError, match="at most 17 fits"):
        check_range(1000, 10.0, 18)
    assert default_scale_bits(2, 1e-3) == 24  # capped
    with pytest.raises(SecAggConfigError, match="cannot be summed"):
        default_scale_bits(4, 2.0**30)
    with pytest.raises(SecAggConfigError, match="positive number"):
        check_range(10, math.nan, 4)
    with pytest.raises(SecAggConfigError, match="scale_bits"):
        check_range(10, 1.0, 25)


def test_the_worst_case_sum_at_the_default_scale_does_not_wrap() -> None:
    n, clip = 1000, 10.0
    bits = default_scale_bits(n, clip)
    one = encode([clip, -clip], clip, bits)
    total = StdlibMod32().zeros(2)
    for _ in range(n):
        StdlibMod32().add_into(total, one)
    assert decode_sum(total, bits) == [n * clip, -n * clip]


# -- vectors -----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50), st.data())
def test_numpy_and_the_reference_give_the_same_bytes(a: list[int], data: st.DataObject) -> None:
    b = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=len(a), max_size=len(a)))
    xa, xb = np.array(a, "<u4").tobytes(), np.array(b, "<u4").tobytes()
    for op in ("add_into", "sub_into"):
        ref, fast = bytearray(xa), bytearray(xa)
        getattr(StdlibMod32(), op)(ref, xb)
        getattr(NumpyMod32(), op)(fast, memoryview(xb))
        assert ref == fast
        sign = 1 if op == "add_into" else -1
        assert np.frombuffer(ref, "<u4").tolist() == [
            (x + sign * y) % 2**32 for x, y in zip(a, b, strict=True)
        ]


def test_vectors_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        StdlibMod32().add_into(bytearray(8), bytes(4))
    with pytest.raises(SecAggViolation, match="holds 8 bytes, not 7"):
        check_vector_bytes(bytes(7), 2)
    check_vector_bytes(memoryview(bytes(8)), 2)


# -- graph -------------------------------------------------------------------------------------


def test_defaults_at_the_documented_sizes() -> None:
    assert (default_degree(100), default_degree(1000)) == (14, 20)
    assert default_degree(5) == 4  # the complete graph once 2 log n reaches n - 1
    assert default_degree(2) == 1
    assert default_threshold(20) == 11


@pytest.mark.parametrize(("n", "k"), [(10, 4), (17, 8), (100, 14), (8, 7), (2, 1)])
def test_every_participant_has_exactly_k_neighbours_symmetric(n: int, k: int) -> None:
    graph = neighbourhoods(n, k, SALT)
    assert set(graph) == set(range(1, n + 1))
    for i, mine in graph.items():
        assert len(mine) == k and i not in mine
        assert all(i in graph[j] for j in mine)


def test_the_graph_is_a_function_of_the_salt() -> None:
    a = neighbourhoods(50, 8, SALT)
    assert a == neighbourhoods(50, 8, SALT)
    other = neighbourhoods(50, 8, round_salt("demo", 4, bytes(range(32))))
    assert a != other
    assert sorted(permutation(50, SALT)) == list(range(1, 51))


def test_uniform_below_rejects_the_biased_tail() -> None:
    limit = (1 << 64) - ((1 << 64) % 3)
    assert uniform_below(iter([limit, limit + 1, 7]), 3) == 1


@pytest.mark.parametrize(("n", "k"), [(10, 3), (10, 10), (10, 0), (1, 0)])
def test_impossible_degrees_are_refused(n: int, k: int) -> None:
    with pytest.raises(SecAggConfigError):
        neighbourhoods(n, k, SALT)


def test_the_salt_binds_task_round_and_seed() -> None:
    seed = bytes(range(32))
    salts = {
        round_salt("demo", 3, seed),
        round_salt("demo2", 3, seed),
        round_salt("demo", 4, seed),
        round_salt("demo", 3, bytes(32)),
    }
    assert len(salts) == 4
    with pytest.raises(SecAggConfigError, match="32 bytes"):
        round_salt("demo", 3, bytes(16))


# -- parameters --------------------------------------------------------------------------------


def test_params_choose_the_documented_defaults() -> None:
    p = SecAggParams.choose(1000, 100_000, 10.0)
    assert (p.degree, p.threshold, p.scale_bits, p.min_survivors) == (20, 11, 17, 11)
    assert p.timeouts.to_dict() == {
        "advertise_s": 30.0,
        "share_s": 30.0,
        "masked_s": 120.0,
        "unmask_s": 30.0,
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 10}, r"threshold 10 must be in \(10, 20\]"),
        ({"threshold": 21}, "threshold 21"),
        ({"degree": 7}, "degree 7"),
        ({"scale_bits": 20}, "wrap around"),
        ({"min_survivors": 0}, "min_survivors"),
        ({"min_survivors": 1001}, "min_survivors"),
    ],
)
def test_params_refuse_what_the_protocol_cannot_run(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(SecAggConfigError, match=match):
        SecAggParams.choose(1000, 10, 10.0, **kwargs)  # type: ignore[arg-type]


def test_params_refuse_bad_dimensions_and_timeouts() -> None:
    with pytest.raises(SecAggConfigError, match="dimension"):
        SecAggParams.choose(10, 0, 1.0)
    with pytest.raises(SecAggConfigError, match="timeout share_s"):
        Timeouts(share_s=0)
    with pytest.raises(SecAggConfigError, match="timeout masked_s"):
        Timeouts(masked_s=math.inf)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-50, 50, allow_nan=False),
            # Exact ties of the rounding: k / 2^f and (k + 1/2) / 2^f.
            st.integers(-(2**20), 2**20).map(lambda k: k / 2**12),
            st.integers(-(2**20), 2**20).map(lambda k: (k + 0.5) / 2**12),
        ),
        max_size=64,
    ),
    st.sampled_from([0.5, 1.0, 10.0, 3.3]),
    st.integers(0, 24),
)
def test_the_numpy_encoding_gives_the_reference_bytes(
    values: list[float], clip: float, bits: int
) -> None:
    assert NumpyMod32().encode(values, clip, bits) == StdlibMod32().encode(values, clip, bits)
    assert StdlibMod32().encode(values, clip, bits) == encode(values, clip, bits)


def test_the_numpy_encoding_refuses_non_finite_values_like_the_reference() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(SecAggConfigError) as ref:
            encode([0.0, bad], 1.0, 4)
        with pytest.raises(SecAggConfigError) as fast:
            NumpyMod32().encode([0.0, bad], 1.0, 4)
        assert str(fast.value) == str(ref.value)
