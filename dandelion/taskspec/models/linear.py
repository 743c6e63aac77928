"""Logistic, softmax and linear regression on sparse inputs.

Each function returns the summed loss of a batch and accumulates the summed gradient into a
sparse dict (index -> value): only the weights of features present in the batch are touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .spec import Example, ModelSpec

__all__ = [
    "linreg_batch",
    "linreg_predict",
    "logreg_batch",
    "logreg_predict",
    "softmax_batch",
    "softmax_predict",
    "softmax_probs",
]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _linear(w: Sequence[float], bias: int, ex: Example) -> float:
    """w . x + w[bias] over the example's sparse features."""
    z = w[bias]
    for i, v in zip(ex.indices, ex.values, strict=True):
        z += w[i] * v
    return z


def _add_linear_grad(grad: dict[int, float], bias: int, ex: Example, g: float) -> None:
    """Add g * x (and g for the bias) into the sparse gradient."""
    for i, v in zip(ex.indices, ex.values, strict=True):
        grad[i] = grad.get(i, 0.0) + g * v
    grad[bias] = grad.get(bias, 0.0) + g


def logreg_predict(spec: ModelSpec, w: Sequence[float], ex: Example) -> list[float]:
    p = _sigmoid(_linear(w, spec.num_features, ex))
    return [1.0 - p, p]


def logreg_batch(
    spec: ModelSpec, w: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    bias = spec.num_features
    loss = 0.0
    for ex in batch:
        z = _linear(w, bias, ex)
        p = _sigmoid(z)
        y = 1.0 if ex.label == 1 else 0.0
        # log(1 + e^-z) or log(1 + e^z), computed without overflow
        loss += (math.log1p(math.exp(-abs(z))) + max(z, 0.0)) - y * z
        _add_linear_grad(grad, bias, ex, p - y)
    return loss


def softmax_probs(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(z - top) for z in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _logits(spec: ModelSpec, w: Sequence[float], ex: Example) -> list[float]:
    f, c = spec.num_features, spec.num_classes
    logits = [w[c * f + k] for k in range(c)]
    for i, v in zip(ex.indices, ex.values, strict=True):
        for k in range(c):
            logits[k] += w[k * f + i] * v
    return logits


def softmax_predict(spec: ModelSpec, w: Sequence[float], ex: Example) -> list[float]:
    return softmax_probs(_logits(spec, w, ex))


def softmax_batch(
    spec: ModelSpec, w: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    f, c = spec.num_features, spec.num_classes
    loss = 0.0
    for ex in batch:
        probs = softmax_probs(_logits(spec, w, ex))
        loss -= math.log(max(probs[ex.label], 1e-300))
        for k in range(c):
            g = probs[k] - (1.0 if k == ex.label else 0.0)
            for i, v in zip(ex.indices, ex.values, strict=True):
                key = k * f + i
                grad[key] = grad.get(key, 0.0) + g * v
            grad[c * f + k] = grad.get(c * f + k, 0.0) + g
    return loss


def linreg_predict(spec: ModelSpec, w: Sequence[float], ex: Example) -> list[float]:
    return [_linear(w, spec.num_features, ex)]


def linreg_batch(
    spec: ModelSpec, w: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    bias = spec.num_features
    loss = 0.0
    for ex in batch:
        g = _linear(w, bias, ex) - ex.target
        loss += 0.5 * g * g
        _add_linear_grad(grad, bias, ex, g)
    return loss
