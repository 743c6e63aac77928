"""``relu_net``: one ReLU hidden layer of ``hidden`` units and a sigmoid output, for binary
objectives. Pure Python (forward, gradient) for the browser, a numpy path for the emulator
and the exporter, and its ONNX form.

Parameters, with F = num_features, H = hidden: W1[h*F + f] (H*F), b1[h] (H), w2[h] (H), b2 (1).
Scores: ``[1 - p, p]`` with p = sigmoid(w2 . relu(W1 x + b1) + b2).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from dandelion.taskspec import Example, Model, ModelSpec, register_model

__all__ = ["ReluNet"]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@register_model("relu_net")
class ReluNet(Model):
    def check(self, spec: ModelSpec) -> None:
        if spec.num_classes != 2:
            raise ValueError("relu_net is binary: num_classes must be 2")
        if spec.hidden < 1:
            raise ValueError("relu_net needs hidden >= 1")

    def param_count(self, spec: ModelSpec) -> int:
        f, h = spec.num_features, spec.hidden
        return h * f + h + h + 1

    def init(self, spec: ModelSpec, rng: random.Random) -> list[float]:
        f, h = spec.num_features, spec.hidden
        a1, a2 = math.sqrt(6.0 / (f + h)), math.sqrt(6.0 / (h + 1))
        w1 = [rng.uniform(-a1, a1) for _ in range(h * f)]
        w2 = [rng.uniform(-a2, a2) for _ in range(h)]
        return w1 + [0.01] * h + w2 + [0.0]

    def _forward(
        self, spec: ModelSpec, w: Sequence[float], ex: Example
    ) -> tuple[list[float], float]:
        f, h = spec.num_features, spec.hidden
        b1 = h * f
        pre = [w[b1 + j] for j in range(h)]
        for i, v in zip(ex.indices, ex.values, strict=True):
            for j in range(h):
                pre[j] += w[j * f + i] * v
        act = [z if z > 0.0 else 0.0 for z in pre]
        w2 = b1 + h
        z = w[w2 + h]
        for j in range(h):
            z += w[w2 + j] * act[j]
        return act, _sigmoid(z)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        p = self._forward(spec, params, ex)[1]
        return [1.0 - p, p]

    def loss_grad(
        self,
        spec: ModelSpec,
        params: Sequence[float],
        batch: Sequence[Example],
        grad: dict[int, float],
    ) -> float:
        f, h = spec.num_features, spec.hidden
        b1, w2 = h * f, h * f + h
        b2 = w2 + h
        loss = 0.0
        for ex in batch:
            act, p = self._forward(spec, params, ex)
            y = 1.0 if ex.label == 1 else 0.0
            loss -= math.log(max(p if y else 1.0 - p, 1e-300))
            g = p - y
            grad[b2] = grad.get(b2, 0.0) + g
            for j in range(h):
                if act[j] > 0.0:
                    grad[w2 + j] = grad.get(w2 + j, 0.0) + g * act[j]
                    d = g * params[w2 + j]
                    grad[b1 + j] = grad.get(b1 + j, 0.0) + d
                    for i, v in zip(ex.indices, ex.values, strict=True):
                        key = j * f + i
                        grad[key] = grad.get(key, 0.0) + d * v
        return loss

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        import numpy as np

        f, h = spec.num_features, spec.hidden
        w = np.asarray(params, dtype=np.float64)
        b1, w2 = h * f, h * f + h
        act = np.maximum(dense @ w[:b1].reshape(h, f).T + w[b1:w2], 0.0)
        p = 1.0 / (1.0 + np.exp(-(act @ w[w2 : w2 + h] + w[w2 + h])))
        return np.stack([1.0 - p, p], axis=1)

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        import numpy as np

        helper, numpy_helper = onnx.helper, onnx.numpy_helper
        f, h = spec.num_features, spec.hidden
        w = np.asarray(params, dtype=np.float32)
        b1, w2 = h * f, h * f + h
        inits = [
            numpy_helper.from_array(w[:b1].reshape(h, f).T.copy(), "W1"),
            numpy_helper.from_array(w[b1:w2].copy(), "B1"),
            numpy_helper.from_array(w[w2 : w2 + h].reshape(h, 1).copy(), "W2"),
            numpy_helper.from_array(w[w2 + h :].copy(), "B2"),
            numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), "ONE"),
        ]
        nodes = [
            helper.make_node("MatMul", ["x", "W1"], ["h0"]),
            helper.make_node("Add", ["h0", "B1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "W2"], ["z0"]),
            helper.make_node("Add", ["z0", "B2"], ["z1"]),
            helper.make_node("Sigmoid", ["z1"], ["p"]),
            helper.make_node("Sub", ["ONE", "p"], ["q"]),
            helper.make_node("Concat", ["q", "p"], ["scores"], axis=1),
        ]
        return nodes, inits
