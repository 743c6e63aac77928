"""Server optimizers: maths by hand, and exact resume through a persisted state."""

from __future__ import annotations

import numpy as np
import pytest

from dandelion.aggregation.optimizers import (
    OPTIMIZERS,
    decode_state,
    encode_state,
    make_optimizer,
)

X0 = np.array([1.0, -2.0, 0.5], np.float32)
DELTAS = [np.array(d, np.float32) for d in ([0.1, 0.2, -0.3], [0.4, -0.1, 0.0], [-0.2, 0.3, 0.1])]


def test_fedavg_adds_the_scaled_mean_delta() -> None:
    opt = make_optimizer("fedavg", server_lr=0.5)
    np.testing.assert_allclose(opt.step(X0, DELTAS[0]), X0 + 0.5 * DELTAS[0])


def test_fedavgm_by_hand() -> None:
    opt = make_optimizer("fedavgm", server_lr=1.0, momentum=0.5)
    x1 = opt.step(X0, DELTAS[0])
    x2 = opt.step(x1, DELTAS[1])
    v1 = DELTAS[0]
    v2 = 0.5 * v1 + DELTAS[1]
    np.testing.assert_allclose(x2, X0 + v1 + v2, rtol=1e-6)


def test_fedadam_by_hand() -> None:
    opt = make_optimizer("fedadam", server_lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    x, m, v = X0.astype(np.float64), np.zeros(3), np.zeros(3)
    got = X0
    for d in DELTAS:
        got = opt.step(got, d)
        m = 0.9 * m + 0.1 * d
        v = 0.99 * v + 0.01 * d * d
        x = x + 0.1 * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(got, x, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_a_persisted_state_is_exact(name: str) -> None:
    straight = make_optimizer(name)
    x = X0
    for d in DELTAS:
        x = straight.step(x, d)
    first = make_optimizer(name)
    y = first.step(X0, DELTAS[0])
    blob = encode_state(first.state())
    resumed = make_optimizer(name)
    resumed.load_state(decode_state(blob))
    for d in DELTAS[1:]:
        y = resumed.step(y, d)
    np.testing.assert_array_equal(x, y)
    assert x.dtype == np.float32


def test_unknown_names_and_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="known"):
        make_optimizer("sgd")
    with pytest.raises(ValueError):
        make_optimizer("fedavg", momentum=0.9)
    with pytest.raises(ValueError):
        make_optimizer("fedavgm", momentum=1.5)
    with pytest.raises(ValueError):
        make_optimizer("fedavg").load_state({"x": np.zeros(1)})
