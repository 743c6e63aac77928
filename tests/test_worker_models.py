"""The worker's models and local training: exact gradients, learning, clipping, determinism."""

from __future__ import annotations

import math
import random

import pytest

from browser_worker.training import Hyper, evaluate, train_local
from dandelion.taskspec.models import (
    Example,
    ModelSpec,
    batch_loss_grad,
    init_params,
    predict_proba,
)

SPECS = [ModelSpec("logreg", 5), ModelSpec("softmax", 5, 3), ModelSpec("mlp", 5, 3, hidden=4)]


def _data(spec: ModelSpec, n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        idx = tuple(sorted(rng.sample(range(spec.num_features), 3)))
        vals = tuple(rng.uniform(-1, 1) for _ in idx)
        out.append(Example(idx, vals, rng.randrange(spec.num_classes)))
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_gradients_match_finite_differences(spec: ModelSpec) -> None:
    rng = random.Random(3)
    params = [rng.uniform(-0.5, 0.5) for _ in range(spec.param_count)]
    batch = _data(spec, 6, 4)
    grad: dict[int, float] = {}
    batch_loss_grad(spec, params, batch, grad)
    eps = 1e-6
    for i in range(spec.param_count):
        up, down = list(params), list(params)
        up[i] += eps
        down[i] -= eps
        numeric = (
            batch_loss_grad(spec, up, batch, {}) - batch_loss_grad(spec, down, batch, {})
        ) / (2 * eps)
        assert grad.get(i, 0.0) == pytest.approx(numeric, abs=1e-6), i


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_shapes_and_probabilities(spec: ModelSpec) -> None:
    params = init_params(spec, random.Random(0))
    assert len(params) == spec.param_count
    probs = predict_proba(spec, params, _data(spec, 1, 0)[0])
    assert len(probs) == spec.num_classes
    assert sum(probs) == pytest.approx(1.0)


def test_param_counts_and_spec_round_trip() -> None:
    assert ModelSpec("logreg", 10).param_count == 11
    assert ModelSpec("softmax", 10, 4).param_count == 44
    assert ModelSpec("mlp", 10, 3, 5).param_count == 50 + 5 + 15 + 3
    spec = ModelSpec("mlp", 10, 3, 5)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="param_count"):
        ModelSpec.from_dict({**spec.to_dict(), "param_count": 7})
    with pytest.raises(ValueError):
        ModelSpec("logreg", 10, num_classes=3)
    with pytest.raises(ValueError):
        ModelSpec("mlp", 10)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
def test_training_learns_a_separable_problem(spec: ModelSpec) -> None:
    # class k lights up feature k: trivially separable
    data = [Example((k,), (1.0,), k) for k in range(spec.num_classes)] * 20
    params = init_params(spec, random.Random(1))
    hyper = Hyper(learning_rate=0.5, epochs=20, batch_size=4, clip_norm=1e9)
    result = train_local(spec, params, data, hyper, random.Random(2))
    trained = [p + d for p, d in zip(params, result.delta, strict=True)]
    loss_after, acc_after = evaluate(spec, trained, data)
    assert loss_after < result.loss
    assert acc_after == 1.0


def test_clipping_and_the_unclipped_bit() -> None:
    spec = ModelSpec("logreg", 5)
    data = _data(spec, 40, 5)
    params = init_params(spec, random.Random(0))
    loose = train_local(spec, params, data, Hyper(0.5, 3, 4, 1e9), random.Random(1))
    assert loose.unclipped
    assert loose.clipped_delta == loose.delta
    bound = loose.norm / 4
    tight = train_local(spec, params, data, Hyper(0.5, 3, 4, bound), random.Random(1))
    assert not tight.unclipped
    assert tight.norm == pytest.approx(loose.norm)
    assert math.sqrt(sum(d * d for d in tight.clipped_delta)) == pytest.approx(bound)


def test_training_is_deterministic_per_seed() -> None:
    spec = ModelSpec("softmax", 5, 3)
    data = _data(spec, 30, 6)
    params = init_params(spec, random.Random(0))
    hyper = Hyper(0.1, 2, 5, 1.0)
    a = train_local(spec, params, data, hyper, random.Random(9))
    b = train_local(spec, params, data, hyper, random.Random(9))
    c = train_local(spec, params, data, hyper, random.Random(10))
    assert a.delta == b.delta
    assert a.delta != c.delta


def test_hyper_round_trip_and_checks() -> None:
    hyper = Hyper(0.1, 2, 8, 1.0, l2=0.01)
    assert Hyper.from_dict(hyper.to_dict()) == hyper
    with pytest.raises(ValueError):
        Hyper.from_dict({"learning_rate": 0, "epochs": 1, "batch_size": 1, "clip_norm": 1})


def test_a_spec_parsed_again_is_the_same_and_its_types_still_count() -> None:
    raw = {"kind": "logreg", "num_features": 7, "num_classes": 2, "hidden": 0, "param_count": 8}
    first = ModelSpec.from_dict(raw)
    assert ModelSpec.from_dict(dict(raw)) is first
    with pytest.raises(ValueError, match="num_features"):
        ModelSpec.from_dict({**raw, "num_features": 7.0})  # equal to 7, not an integer
    with pytest.raises(ValueError, match="param_count"):
        ModelSpec.from_dict({**raw, "param_count": 9})
    options = {**raw, "kind": "mlp", "hidden": 3, "param_count": 32, "options": {"a": 1}}
    assert ModelSpec.from_dict(options) == ModelSpec.from_dict(options)  # unhashable: built
