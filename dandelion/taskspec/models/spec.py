"""What a model is: its kind and sizes, and the sparse examples it learns from.

A model's parameters are ONE flat list of floats (float32 on the wire); its kind (a registered
model name, or ``"package.module:attribute"`` for a model of your own, see
:mod:`dandelion.taskspec.models.base`) says how they are laid out. The built-in layouts, with
F = num_features, C = num_classes, H = hidden:

- ``logreg``:  w[0:F], then the bias (F + 1 values).
- ``softmax``: W row-major by class, W[c*F + f] (C*F values), then biases b[c] (C values).
- ``mlp``:     W1[h*F + f] (H*F), b1[h] (H), W2[c*H + h] (C*H), b2[c] (C); tanh hidden layer,
  softmax output.
- ``linreg``:  w[0:F], then the bias (F + 1 values); one output, the predicted value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Example", "ModelSpec"]

_OPTION = (int, float, str, bool)
#: ``ModelSpec.param_count`` of the specs seen (a spec is frozen: its count never changes).
_PARAM_COUNTS: dict[ModelSpec, int] = {}
#: The specs ``ModelSpec.from_dict`` built, by the items (with their exact types) it built them
#: from, with the model plugin that checked them: a worker parses the same model object with
#: every task.
_FROM_DICT: dict[tuple[tuple[str, type, Any], ...], tuple[ModelSpec, Any]] = {}


@dataclass(frozen=True, slots=True)
class Example:
    """One sparse example: feature ``indices`` with their ``values``; a class ``label`` for a
    classification objective, a real ``target`` for a regression one."""

    indices: tuple[int, ...]
    values: tuple[float, ...]
    label: int = 0
    target: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's kind and sizes. ``num_classes`` is the number of outputs (1 for a regression
    model); ``hidden`` a hidden width for kinds that have one; ``options`` anything else a model
    of your own reads (numbers, strings, booleans), as sorted ``(name, value)`` pairs so that a
    spec stays hashable (read one with :meth:`option`)."""

    kind: str
    num_features: int
    num_classes: int = 2
    hidden: int = 0
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError("kind must be a model name")
        if type(self.num_features) is not int or self.num_features < 1:
            raise ValueError("num_features must be a positive integer")
        if type(self.num_classes) is not int or self.num_classes < 1:
            raise ValueError("num_classes must be a positive integer")
        if type(self.hidden) is not int or self.hidden < 0:
            raise ValueError("hidden must be a non-negative integer")
        for key, value in self.options:
            if not isinstance(key, str) or not isinstance(value, _OPTION):
                raise ValueError(f"options.{key}: a number, a string or a boolean")
        self.model.check(self)

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    @property
    def model(self) -> Any:
        """The model plugin this spec's kind names (a :class:`~.base.Model`)."""
        from ..registry import model

        return model(self.kind)

    @property
    def param_count(self) -> int:
        # Asked for on every task sent and every update received: worked out once per spec.
        count = _PARAM_COUNTS.get(self)
        if count is None:
            count = int(self.model.param_count(self))
            if len(_PARAM_COUNTS) >= 256:
                _PARAM_COUNTS.clear()
            _PARAM_COUNTS[self] = count
        return count

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "num_features": self.num_features,
            "num_classes": self.num_classes,
            "hidden": self.hidden,
            "param_count": self.param_count,
        }
        if self.options:
            out["options"] = dict(self.options)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSpec:
        """Build from a task's ``model`` object; raises ValueError if param_count disagrees (and
        LookupError for a kind this runtime does not have)."""
        key: tuple[tuple[str, type, Any], ...] | None
        try:
            key = tuple((k, type(v), v) for k, v in raw.items())
            known = _FROM_DICT.get(key)
        except TypeError:  # an unhashable value (options): built every time
            key, known = None, None
        if known is not None:
            spec, checked_by = known
            # The kind still names the plugin that checked it (else: built and checked anew,
            # raising if the kind is no longer known).
            if spec.model is checked_by:
                return spec
        spec = cls._build(raw)
        if key is not None:
            if len(_FROM_DICT) >= 256:
                _FROM_DICT.clear()
            _FROM_DICT[key] = (spec, spec.model)
        return spec

    @classmethod
    def _build(cls, raw: Mapping[str, Any]) -> ModelSpec:
        options = raw.get("options", {})
        if not isinstance(options, Mapping):
            raise ValueError("options must be a table")
        spec = cls(
            kind=raw["kind"],
            num_features=raw["num_features"],
            num_classes=raw.get("num_classes", 2),
            hidden=raw.get("hidden", 0),
            options=tuple(sorted(options.items())),
        )
        stated = raw.get("param_count", spec.param_count)
        if stated != spec.param_count:
            raise ValueError(f"param_count {stated} disagrees with the spec ({spec.param_count})")
        return spec
