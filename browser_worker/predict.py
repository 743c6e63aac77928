"""``predict()``: a task's released global model on this browser's own signals.

The model comes as data (the public model endpoint, ``GET /models/{task}``: the task's spec as
JSON and its float32 weights), never as code: the objective and model plugins that interpret it
are the ones shipped inside the worker wheel. Nothing leaves the browser; the scores are for the
page or the extension to use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dandelion.protocol import floats_from_payload
from dandelion.taskspec.models import ModelSpec, predict_proba
from dandelion.taskspec.registry import objective
from dandelion.taskspec.signals import Signals

__all__ = ["PredictError", "params_from_weights", "predict"]


class PredictError(ValueError):
    """The model document or its weights do not fit together."""


def params_from_weights(weights: bytes | memoryview, spec: ModelSpec) -> list[float]:
    """The float32 little-endian ``weights`` as floats; raises PredictError on a size mismatch."""
    if len(weights) != 4 * spec.param_count:
        raise PredictError(f"{len(weights)} bytes of weights for {spec.param_count} parameters")
    return floats_from_payload(weights, "float32")


def predict(
    model: Mapping[str, Any], params: Sequence[float], signals: Signals, now: float
) -> dict[str, Any]:
    """Score ``signals`` with ``params``. ``model`` is the public model document: ``task``,
    ``version``, ``objective``, ``features``, ``model`` (the spec); ``now``, seconds since the
    epoch, the moment the features describe. Returns ``{"task", "version", "objective",
    "outputs": [names], "predictions": [{"item", "scores"}], "now"}``: with ``now`` the same
    document, weights and signals give the same scores anywhere."""
    try:
        spec = ModelSpec.from_dict(model["model"])
        task_objective = objective(str(model["objective"]))
        features = task_objective.configure(dict(model.get("features") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictError(f"model document: {exc}") from None
    if len(params) != spec.param_count:
        raise PredictError(f"{len(params)} parameters for a model of {spec.param_count}")
    predictions = [
        {"item": item, "scores": predict_proba(spec, params, ex)}
        for item, ex in task_objective.predict_inputs(signals, features, now)
    ]
    return {
        "task": model.get("task"),
        "version": model.get("version"),
        "objective": model["objective"],
        "outputs": task_objective.outputs(features),
        "predictions": predictions,
        "now": now,
    }
