"""What a model is: its kind and sizes, and the sparse examples it learns from.

Parameters of every kind are ONE flat list of floats (float32 on the wire). Layouts, with
F = num_features, C = num_classes, H = hidden:

- ``logreg``:  w[0:F], then the bias (F + 1 values).
- ``softmax``: W row-major by class, W[c*F + f] (C*F values), then biases b[c] (C values).
- ``mlp``:     W1[h*F + f] (H*F), b1[h] (H), W2[c*H + h] (C*H), b2[c] (C); tanh hidden layer,
  softmax output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "Example", "ModelSpec"]

KINDS = ("logreg", "softmax", "mlp")


@dataclass(frozen=True, slots=True)
class Example:
    """One sparse example: feature ``indices`` with their ``values``, and a class ``label``."""

    indices: tuple[int, ...]
    values: tuple[float, ...]
    label: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    kind: str
    num_features: int
    num_classes: int = 2
    hidden: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, not {self.kind!r}")
        if type(self.num_features) is not int or self.num_features < 1:
            raise ValueError("num_features must be a positive integer")
        if type(self.num_classes) is not int or self.num_classes < 2:
            raise ValueError("num_classes must be an integer >= 2")
        if self.kind == "logreg" and self.num_classes != 2:
            raise ValueError("logreg is binary: num_classes must be 2")
        if type(self.hidden) is not int or self.hidden < 0:
            raise ValueError("hidden must be a non-negative integer")
        if (self.kind == "mlp") != (self.hidden > 0):
            raise ValueError("hidden > 0 is required for mlp and only for mlp")

    @property
    def param_count(self) -> int:
        f, c, h = self.num_features, self.num_classes, self.hidden
        if self.kind == "logreg":
            return f + 1
        if self.kind == "softmax":
            return c * f + c
        return h * f + h + c * h + c

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "param_count": self.param_count,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelSpec:
        """Build from a task's ``model`` object; raises ValueError if param_count disagrees."""
        spec = cls(
            kind=raw["kind"],
            num_features=raw["num_features"],
            num_classes=raw.get("num_classes", 2),
            hidden=raw.get("hidden", 0),
        )
        stated = raw.get("param_count", spec.param_count)
        if stated != spec.param_count:
            raise ValueError(f"param_count {stated} disagrees with the spec ({spec.param_count})")
        return spec
