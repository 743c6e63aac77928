"""One committed model version of one task, as it is given out: the public model document
(``GET /models/{task}``), an ONNX file or a safetensors file (``dandelion model export``).

Rules of this file: standard library and the task spec only (the admin API imports it, and the
worker's ``predict()`` reads the document it makes). What a task *means* — its spec, its
objective's output names — comes from the task-spec registry, so a task whose model or
objective is a plugin needs that plugin imported here (``--with``). Whether a version may be
published at all (the k threshold, ``public_model``) is the API's decision, not this file's.

Raises :class:`ExportError`, whose message is one line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..storage import ModelVersion, StateStore
from ..taskspec.models import ModelSpec
from ..taskspec.registry import UnknownPlugin, objective

__all__ = [
    "DTYPE",
    "ExportError",
    "Release",
    "UnknownModelError",
    "public_document",
    "read_release",
]

#: The weights' encoding everywhere they are given out: float32, little-endian.
DTYPE = "float32"


class ExportError(Exception):
    """The task, the version or the model cannot be given out in the form asked for."""


class UnknownModelError(ExportError):
    """The task's model (or objective) is not known in this process: its package is not here."""


@dataclass(frozen=True, slots=True)
class Release:
    """A model version with what it takes to use it: the task's objective, its configured
    features and the model spec (its kind says how ``params`` are laid out)."""

    task: str
    version: int
    round: int
    objective: str
    features: dict[str, Any]
    spec: ModelSpec
    params: bytes = field(repr=False)  # float32 little-endian, spec.param_count of them
    created_at: float = 0.0

    @classmethod
    def of(cls, config: Mapping[str, Any], version: ModelVersion) -> Release:
        """``version`` of the task whose stored configuration is ``config``. Raises
        ExportError when its model is not known here or the parameters do not fit it."""
        try:
            spec = ModelSpec.from_dict(config["model"])
        except UnknownPlugin as exc:
            raise UnknownModelError(f"{exc}; import its package with --with") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"task {version.task!r}: its model does not load: {exc}") from None
        if len(version.params) != 4 * spec.param_count:
            raise ExportError(
                f"task {version.task!r} version {version.version}: {len(version.params)} bytes "
                f"of parameters for a model of {spec.param_count}"
            )
        return cls(
            task=version.task,
            version=version.version,
            round=version.round,
            objective=str(config["objective"]),
            features=dict(config.get("features") or {}),
            spec=spec,
            params=version.params,
            created_at=version.created_at,
        )

    @property
    def outputs(self) -> list[str]:
        """The names of the model's outputs (the objective's ``outputs(features)``)."""
        try:
            found = objective(self.objective)
        except UnknownPlugin as exc:
            raise UnknownModelError(f"{exc}; import its package with --with") from None
        return [str(name) for name in found.outputs(self.features)]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.params).hexdigest()

    def metadata(self) -> dict[str, str]:
        """What an exported file carries about itself, every value a string (JSON for the
        structured ones): ONNX ``metadata_props`` and the safetensors header's metadata."""
        return {
            "task": self.task,
            "version": str(self.version),
            "round": str(self.round),
            "objective": self.objective,
            "features": json.dumps(self.features, sort_keys=True),
            "spec": json.dumps(self.spec.to_dict(), sort_keys=True),
            "outputs": json.dumps(self.outputs),
            "dtype": DTYPE,
            "dandelion_version": __version__,
        }


def public_document(
    release: Release, *, weights_url: str, sha256: str, created_at: float | None
) -> dict[str, Any]:
    """The public model document: what ``browser_worker.predict.predict()`` takes, with where
    its weights are (``weights_url``) and their SHA-256."""
    return {
        "task": release.task,
        "version": release.version,
        "round": release.round,
        "objective": release.objective,
        "features": release.features,
        "model": release.spec.to_dict(),
        "outputs": release.outputs,
        "dtype": DTYPE,
        "weights": weights_url,
        "sha256": sha256,
        "created_at": created_at,
    }


def read_release(store: StateStore, task: str, version: int | None = None) -> Release:
    """Version ``version`` of ``task`` (None: the latest committed one). Raises ExportError
    for a task or a version that is not there."""
    record = store.get_task(task)
    if record is None:
        known = ", ".join(t.name for t in store.list_tasks()) or "none"
        raise ExportError(f"no task {task!r} in the state file (tasks: {known})")
    found = (
        store.latest_model_version(task)
        if version is None
        else store.get_model_version(task, version)
    )
    if found is None:
        latest = store.latest_model_version(task)
        have = f"versions 0 to {latest.version}" if latest is not None else "no versions"
        raise ExportError(f"task {task!r} has no model version {version} ({have})")
    return Release.of(record.config, found)
