"""A one-hidden-layer perceptron (tanh, softmax output) on sparse inputs.

The first layer touches only the columns of features present; the rest is dense but small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .linear import softmax_probs
from .spec import Example, ModelSpec

__all__ = ["mlp_batch", "mlp_predict"]


def _forward(spec: ModelSpec, w: Sequence[float], ex: Example) -> tuple[list[float], list[float]]:
    f, h, c = spec.num_features, spec.hidden, spec.num_classes
    b1 = h * f
    pre = [w[b1 + j] for j in range(h)]
    for i, v in zip(ex.indices, ex.values, strict=True):
        for j in range(h):
            pre[j] += w[j * f + i] * v
    act = [math.tanh(z) for z in pre]
    w2 = b1 + h
    b2 = w2 + c * h
    logits = []
    for k in range(c):
        z = w[b2 + k]
        row = w2 + k * h
        for j in range(h):
            z += w[row + j] * act[j]
        logits.append(z)
    return act, softmax_probs(logits)


def mlp_predict(spec: ModelSpec, w: Sequence[float], ex: Example) -> list[float]:
    return _forward(spec, w, ex)[1]


def mlp_batch(
    spec: ModelSpec, w: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    f, h, c = spec.num_features, spec.hidden, spec.num_classes
    b1 = h * f
    w2 = b1 + h
    b2 = w2 + c * h
    loss = 0.0
    for ex in batch:
        act, probs = _forward(spec, w, ex)
        loss -= math.log(max(probs[ex.label], 1e-300))
        dz2 = [probs[k] - (1.0 if k == ex.label else 0.0) for k in range(c)]
        dact = [0.0] * h
        for k in range(c):
            g = dz2[k]
            row = w2 + k * h
            for j in range(h):
                grad[row + j] = grad.get(row + j, 0.0) + g * act[j]
                dact[j] += g * w[row + j]
            grad[b2 + k] = grad.get(b2 + k, 0.0) + g
        dpre = [dact[j] * (1.0 - act[j] * act[j]) for j in range(h)]
        for j in range(h):
            grad[b1 + j] = grad.get(b1 + j, 0.0) + dpre[j]
        for i, v in zip(ex.indices, ex.values, strict=True):
            for j in range(h):
                key = j * f + i
                grad[key] = grad.get(key, 0.0) + dpre[j] * v
    return loss
