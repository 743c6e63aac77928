"""Models the worker can train: their specification, initial parameters, loss and gradient.

Standard library only; the same code runs in Pyodide and in CPython.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from .linear import logreg_batch, logreg_predict, softmax_batch, softmax_predict
from .mlp import mlp_batch, mlp_predict
from .spec import KINDS, Example, ModelSpec

__all__ = [
    "KINDS",
    "Example",
    "ModelSpec",
    "batch_loss_grad",
    "init_params",
    "predict_proba",
]

BatchFn = Callable[[ModelSpec, Sequence[float], Sequence[Example], dict[int, float]], float]
PredictFn = Callable[[ModelSpec, Sequence[float], Example], list[float]]

_BATCH: dict[str, BatchFn] = {"logreg": logreg_batch, "softmax": softmax_batch, "mlp": mlp_batch}
_PREDICT: dict[str, PredictFn] = {
    "logreg": logreg_predict,
    "softmax": softmax_predict,
    "mlp": mlp_predict,
}


def init_params(spec: ModelSpec, rng: random.Random) -> list[float]:
    """Initial parameters: zeros for linear models; small Glorot-uniform weights for the MLP
    (zeros would leave its hidden units identical)."""
    if spec.kind != "mlp":
        return [0.0] * spec.param_count
    f, h, c = spec.num_features, spec.hidden, spec.num_classes
    a1 = math.sqrt(6.0 / (f + h))
    a2 = math.sqrt(6.0 / (h + c))
    w1 = [rng.uniform(-a1, a1) for _ in range(h * f)]
    w2 = [rng.uniform(-a2, a2) for _ in range(c * h)]
    return w1 + [0.0] * h + w2 + [0.0] * c


def batch_loss_grad(
    spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    """Summed loss of ``batch``; its summed gradient is added into the sparse ``grad``."""
    return _BATCH[spec.kind](spec, params, batch, grad)


def predict_proba(spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
    """Class probabilities for one example."""
    return _PREDICT[spec.kind](spec, params, ex)
