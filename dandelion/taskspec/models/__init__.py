"""Models a worker trains: their specification, initial parameters, loss, gradient and scores.

Standard library only; the same code runs in Pyodide and in CPython. Each function finds the
model plugin by the spec's kind (:func:`dandelion.taskspec.registry.model`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import Model
from .spec import Example, ModelSpec

__all__ = [
    "KINDS",
    "Example",
    "Model",
    "ModelSpec",
    "batch_loss_grad",
    "init_params",
    "predict_proba",
]

#: The built-in model kinds.
KINDS = ("logreg", "softmax", "mlp", "linreg")


def init_params(spec: ModelSpec, rng: random.Random) -> list[float]:
    """Initial parameters: zeros for the linear models; small Glorot-uniform weights for the
    MLP; whatever a plugin's ``init`` gives."""
    params = list(spec.model.init(spec, rng))
    if len(params) != spec.param_count:
        raise ValueError(f"{spec.kind}.init gave {len(params)} values, not {spec.param_count}")
    return params


def batch_loss_grad(
    spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: dict[int, float]
) -> float:
    """Summed loss of ``batch``; its summed gradient is added into the sparse ``grad``."""
    return float(spec.model.loss_grad(spec, params, batch, grad))


def predict_proba(spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
    """The scores of one example: class probabilities (or ``[value]`` for regression)."""
    return list(spec.model.predict(spec, params, ex))
