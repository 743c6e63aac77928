"""The model interface: what a model of your own implements (and the built-in ones do).

A model is a stateless object registered under a name (:func:`dandelion.taskspec.register_model`)
or named in a task file as ``"package.module:attribute"``. Its parameters are one flat list of
floats whose layout it defines. It must run in Pyodide without numpy: :meth:`loss_grad` and
:meth:`predict` are pure Python on sparse :class:`~.spec.Example` objects. A model may add a
numpy path (:meth:`predict_many`) that the emulator and the exporter use; it must give the same
figures (``tests/test_taskspec_models.py`` holds the built-in ones to 1e-9).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from .spec import Example, ModelSpec

__all__ = ["Model"]


class Model:
    """Base class of model plugins. Override :meth:`param_count`, :meth:`loss_grad` and
    :meth:`predict`; the rest has defaults."""

    #: "classification": outputs are class probabilities (``num_classes`` >= 2), the loss is
    #: the log-loss of ``Example.label``. "regression": one output, the loss is half the squared
    #: error to ``Example.target``.
    task: ClassVar[Literal["classification", "regression"]] = "classification"

    def check(self, spec: ModelSpec) -> None:
        """Raise ValueError when ``spec`` does not describe a model of this kind."""
        if self.task == "regression" and spec.num_classes != 1:
            raise ValueError("a regression model has one output: num_classes must be 1")
        if self.task == "classification" and spec.num_classes < 2:
            raise ValueError("a classifier needs num_classes >= 2")

    def param_count(self, spec: ModelSpec) -> int:
        raise NotImplementedError

    def init(self, spec: ModelSpec, rng: random.Random) -> list[float]:
        """Initial parameters (version 0 of the global model); zeros by default."""
        return [0.0] * self.param_count(spec)

    def loss_grad(
        self,
        spec: ModelSpec,
        params: Sequence[float],
        batch: Sequence[Example],
        grad: dict[int, float],
    ) -> float:
        """The summed loss of ``batch``; add its summed gradient into the sparse ``grad``
        (parameter index -> value)."""
        raise NotImplementedError

    def predict(self, spec: ModelSpec, params: Sequence[float], ex: Example) -> list[float]:
        """The scores of one example: class probabilities, or ``[value]`` for regression."""
        raise NotImplementedError

    def predict_many(self, spec: ModelSpec, params: Any, dense: Any) -> Any:
        """Optional numpy path: scores of a dense float64 (n, F) array as an (n, outputs)
        array, equal to :meth:`predict` row by row. Raises NotImplementedError if absent."""
        raise NotImplementedError

    def onnx_nodes(self, spec: ModelSpec, params: Sequence[float], onnx: Any) -> Any:
        """Optional ONNX form for ``dandelion model export``: return ``(nodes, initializers)``
        built with ``onnx.helper`` / ``onnx.numpy_helper`` (``onnx`` is the imported module)
        mapping input ``x`` (float32 [N, F]) to output ``scores`` (float32 [N, outputs]).
        Raises NotImplementedError if absent (the built-in kinds have one)."""
        raise NotImplementedError
