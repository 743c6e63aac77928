"""A task's objective, its ``[features]`` and its ``[model]``, resolved through the task-spec
registry (``dandelion.taskspec``): the coordinator learns what a task means from the same code
the worker runs, never from ``browser_worker``."""

from __future__ import annotations

from typing import Any

from ..taskspec.models import ModelSpec
from ..taskspec.registry import UnknownPlugin, model, objective
from ..taskspec.tables import unknown_key

__all__ = ["MODEL_KEYS", "resolve_task_model"]

MODEL_KEYS = ("kind", "num_features", "num_classes", "hidden", "options", "param_count")


def resolve_task_model(
    objective_ref: str, features_raw: dict[str, Any], model_raw: dict[str, Any]
) -> tuple[dict[str, Any], ModelSpec]:
    """The complete features (defaults filled in) and the model spec. Raises ValueError with a
    one-line message naming the field (``"objective: ..."``, ``"features.x: ..."``,
    ``"model.kind: ..."``)."""
    try:
        task_objective = objective(objective_ref)
    except UnknownPlugin as exc:
        raise ValueError(f"objective: {exc}") from None
    if task_objective.width_from_model and "num_features" in model_raw:
        features_raw = {"num_features": model_raw["num_features"], **features_raw}
    try:
        features = task_objective.configure(features_raw)
    except (TypeError, ValueError) as exc:
        table = "features"
        if task_objective.width_from_model and str(exc).startswith("num_features"):
            table = "model"
        raise ValueError(f"{table}.{exc}") from None
    error = unknown_key("model.", model_raw, MODEL_KEYS)
    if error is not None:
        raise ValueError(error)
    kind = model_raw.get("kind", task_objective.default_model)
    if not isinstance(kind, str):
        raise ValueError("model.kind: a model name or package.module:attribute")
    try:
        plugin = model(kind)
    except UnknownPlugin as exc:
        raise ValueError(f"model.kind: {exc}") from None
    if plugin.task != task_objective.task:
        raise ValueError(
            f"model.kind: {kind} is a {plugin.task} model; objective {objective_ref} is "
            f"{task_objective.task}"
        )
    made = task_objective.num_features(features)
    width = model_raw.get("num_features", made)
    if width != made:
        raise ValueError(
            f"model.num_features: objective {objective_ref} makes {made}, not {width!r}"
        )
    outputs = len(task_objective.outputs(features))
    classes = model_raw.get("num_classes", outputs if task_objective.task != "regression" else 1)
    if classes != outputs and task_objective.task == "classification":
        raise ValueError(
            f"model.num_classes: objective {objective_ref} has {outputs} classes, not {classes!r}"
        )
    spec_raw: dict[str, Any] = {
        "kind": kind,
        "num_features": made,
        "num_classes": classes,
        "hidden": model_raw.get("hidden", 0),
        "options": model_raw.get("options", {}),
    }
    if "param_count" in model_raw:
        spec_raw["param_count"] = model_raw["param_count"]
    try:
        spec = ModelSpec.from_dict(spec_raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model: {exc}") from None
    return features, spec
