"""The built-in models: logistic, softmax and linear regression, and a one-hidden-layer MLP.

Each has a numpy path (``predict_many``) and an ONNX form (``onnx_nodes``, for ``dandelion
model export``); both import numpy inside the method, so that this module stays standard
library only for Pyodide. The ONNX forms are ``Gemm`` nodes with ``transB = 1``, which take the
weights in the row-major [outputs, inputs] layout of :mod:`.spec` as they are.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from .base import Model
from .linear import (
    linreg_batch,
    linreg_predict,
    logreg_batch,
    logreg_predict,
    softmax_batch,
    softmax_predict,
)
from .mlp import mlp_batch, mlp_predict
from .spec import Example, ModelSpec

__all__ = ["BUILTIN_MODELS", "LinReg", "LogReg", "Mlp", "Softmax"]


def _no_hidden(spec: ModelSpec) -> None:
    if spec.hidden:
        raise ValueError(f"hidden is for mlp only ({spec.kind} has no hidden layer)")


def _dense_layer(
    onnx: Any, name: str, inp: str, out: str, w: Any, b: Any, rows: int, cols: int
) -> tuple[Any, list[Any]]:
    """``out = inp @ W.T + b`` for the row-major ``w`` ([rows, cols]) and ``b`` ([rows]): one
    Gemm node and its two initializers."""
    import numpy as np

    weights = np.asarray(w, dtype=np.float32).reshape(rows, cols)
    bias = np.asarray(b, dtype=np.float32).reshape(rows)
    inits = [
        onnx.numpy_helper.from_array(weights.copy(), f"{name}_W"),
        onnx.numpy_helper.from_array(bias.copy(), f"{name}_B"),
    ]
    node = onnx.helper.make_node("Gemm", [inp, f"{name}_W", f"{name}_B"], [out], transB=1)
    return node, inits


def _two_classes(onnx: Any, p: str) -> tuple[list[Any], list[Any]]:
    """``scores = [1 - p, p]`` from the [N, 1] probability ``p``."""
    import numpy as np

    one = onnx.numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), "one")
    nodes = [
        onnx.helper.make_node("Sub", ["one", p], ["q"]),
        onnx.helper.make_node("Concat", ["q", p], ["scores"], axis=1),
    ]
    return nodes, [one]


class LogReg(Model):
    """Binary logistic regression: w[0:F], bias."""

    def check(self, spec: ModelSpec) -> None:
        if spec.num_classes != 2:
            raise ValueError("logreg is binary: num_classes must be 2")
        _no_hidden(spec)

    def param_count(self, spec: ModelSpec) -> int:
        return spec.num_features + 1

    def loss_grad(
        self, spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: Any
    ) -> float:
        return logreg_batch(spec, params, batch, grad)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        return logreg_predict(spec, params, ex)

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        import numpy as np

        w = np.asarray(params, dtype=np.float64)
        p = 1.0 / (1.0 + np.exp(-(dense @ w[:-1] + w[-1])))
        return np.stack([1.0 - p, p], axis=1)

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        f = spec.num_features
        gemm, inits = _dense_layer(onnx, "out", "x", "z", params[:f], params[f:], 1, f)
        tail, more = _two_classes(onnx, "p")
        return [gemm, onnx.helper.make_node("Sigmoid", ["z"], ["p"]), *tail], inits + more


class Softmax(Model):
    """Multinomial logistic regression: W[c*F + f], then b[c]."""

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        _no_hidden(spec)

    def param_count(self, spec: ModelSpec) -> int:
        return spec.num_classes * (spec.num_features + 1)

    def loss_grad(
        self, spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: Any
    ) -> float:
        return softmax_batch(spec, params, batch, grad)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        return softmax_predict(spec, params, ex)

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        import numpy as np

        f, c = spec.num_features, spec.num_classes
        w = np.asarray(params, dtype=np.float64)
        logits = dense @ w[: c * f].reshape(c, f).T + w[c * f :]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        f, c = spec.num_features, spec.num_classes
        gemm, inits = _dense_layer(onnx, "out", "x", "z", params[: c * f], params[c * f :], c, f)
        return [gemm, onnx.helper.make_node("Softmax", ["z"], ["scores"], axis=1)], inits


class Mlp(Model):
    """One tanh hidden layer, softmax output: W1[h*F + f], b1, W2[c*H + h], b2."""

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        if spec.hidden < 1:
            raise ValueError("mlp needs hidden >= 1")

    def param_count(self, spec: ModelSpec) -> int:
        f, c, h = spec.num_features, spec.num_classes, spec.hidden
        return h * f + h + c * h + c

    def init(self, spec: ModelSpec, rng: random.Random) -> list[float]:
        """Small Glorot-uniform weights (zeros would leave the hidden units identical)."""
        f, h, c = spec.num_features, spec.hidden, spec.num_classes
        a1 = math.sqrt(6.0 / (f + h))
        a2 = math.sqrt(6.0 / (h + c))
        w1 = [rng.uniform(-a1, a1) for _ in range(h * f)]
        w2 = [rng.uniform(-a2, a2) for _ in range(c * h)]
        return w1 + [0.0] * h + w2 + [0.0] * c

    def loss_grad(
        self, spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: Any
    ) -> float:
        return mlp_batch(spec, params, batch, grad)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        return mlp_predict(spec, params, ex)

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        import numpy as np

        f, h, c = spec.num_features, spec.hidden, spec.num_classes
        w = np.asarray(params, dtype=np.float64)
        b1, w2 = h * f, h * f + h
        b2 = w2 + c * h
        act = np.tanh(dense @ w[:b1].reshape(h, f).T + w[b1:w2])
        logits = act @ w[w2:b2].reshape(c, h).T + w[b2:]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        f, h, c = spec.num_features, spec.hidden, spec.num_classes
        b1, w2 = h * f, h * f + h
        b2 = w2 + c * h
        hidden, inits = _dense_layer(onnx, "hidden", "x", "z1", params[:b1], params[b1:w2], h, f)
        out, more = _dense_layer(onnx, "out", "a1", "z2", params[w2:b2], params[b2:], c, h)
        nodes = [
            hidden,
            onnx.helper.make_node("Tanh", ["z1"], ["a1"]),
            out,
            onnx.helper.make_node("Softmax", ["z2"], ["scores"], axis=1),
        ]
        return nodes, inits + more


class LinReg(Model):
    """Linear regression (half squared error): w[0:F], bias; one output."""

    task: ClassVar[Literal["classification", "regression"]] = "regression"

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        _no_hidden(spec)

    def param_count(self, spec: ModelSpec) -> int:
        return spec.num_features + 1

    def loss_grad(
        self, spec: ModelSpec, params: Sequence[float], batch: Sequence[Example], grad: Any
    ) -> float:
        return linreg_batch(spec, params, batch, grad)

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        return linreg_predict(spec, params, ex)

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        import numpy as np

        w = np.asarray(params, dtype=np.float64)
        return (dense @ w[:-1] + w[-1])[:, None]

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        f = spec.num_features
        gemm, inits = _dense_layer(onnx, "out", "x", "scores", params[:f], params[f:], 1, f)
        return [gemm], inits


BUILTIN_MODELS: dict[str, Model] = {
    "logreg": LogReg(),
    "softmax": Softmax(),
    "mlp": Mlp(),
    "linreg": LinReg(),
}
