"""The ``page_examples`` objective: examples the page or the extension computed itself.

For an application that has its own local data and its own features (a web app's usage, a
reader's articles), the page hands finished examples in the signals object, under
``"examples"``: ``[{"indices": [int], "values": [float], "label": int}, ...]`` (sparse; a
``values`` list may be omitted for all-ones). The input width is the model's
``num_features``; ``num_classes`` (default 2) the number of classes. Examples with an index out
of range or a label out of range are skipped. ``predict()`` scores the examples under
``"predict"`` in the signals object, item names from their ``"item"`` key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..models.spec import Example
from ..objective import Objective
from ..signals import Signals, register_signal

__all__ = ["PageExamples"]

_MAX_NONZERO = 4096


def _item(item: dict[str, Any], tz: int) -> dict[str, Any] | None:
    indices = item.get("indices")
    if not isinstance(indices, list) or len(indices) > _MAX_NONZERO:
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
        return None
    values = item.get("values", [1.0] * len(indices))
    if not isinstance(values, list) or len(values) != len(indices):
        return None
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        return None
    label = item.get("label", 0)
    if not isinstance(label, int) or isinstance(label, bool):
        return None
    name = item.get("item")
    return {
        "indices": tuple(indices),
        "values": tuple(float(v) for v in values),
        "label": label,
        "item": name[:200] if isinstance(name, str) else "",
    }


register_signal("examples", _item)
register_signal("predict", _item)


class PageExamples(Objective):
    signals = ("examples",)
    default_model = "logreg"
    width_from_model = True
    defaults: ClassVar[Mapping[str, Any]] = {"num_features": 1, "num_classes": 2}

    def configure(self, features: Mapping[str, Any]) -> dict[str, Any]:
        out = super().configure(features)
        if out["num_features"] < 1:
            raise ValueError("num_features: an integer >= 1")
        if out["num_classes"] < 2:
            raise ValueError("num_classes: an integer >= 2")
        return out

    def num_features(self, features: Mapping[str, Any]) -> int:
        return int(features["num_features"])

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        return [f"class_{k}" for k in range(int(features["num_classes"]))]

    def _examples(self, items: Sequence[dict[str, Any]], features: Mapping[str, Any]) -> Any:
        width, classes = int(features["num_features"]), int(features["num_classes"])
        for item in items:
            if all(i < width for i in item["indices"]) and 0 <= item["label"] < classes:
                yield item["item"], Example(item["indices"], item["values"], item["label"])

    def examples(self, signals: Signals, features: Mapping[str, Any], now: float) -> list[Example]:
        items = signals.extra.get("examples", ())
        return [ex for _, ex in self._examples(items, features)]

    def predict_inputs(
        self, signals: Signals, features: Mapping[str, Any], now: float
    ) -> list[tuple[str, Example]]:
        items = signals.extra.get("predict", ())
        return [
            (name or str(n), ex) for n, (name, ex) in enumerate(self._examples(items, features))
        ]
