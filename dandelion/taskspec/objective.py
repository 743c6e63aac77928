"""The objective interface: what an objective of your own implements (and the built-in ones do).

An objective says what a worker learns from its own signals: which features an example has
(``num_features``), how labels are made locally (``examples``), what a prediction is about
(``predict_inputs``) and what its scores mean (``outputs``). It runs inside the browser, in
Pyodide, so it is pure Python (standard library only); it reads only the signals it is given
and returns numbers. Register it under a name (:func:`dandelion.taskspec.register_objective`)
or name it in a task file as ``"package.module:attribute"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from .models.spec import Example
from .signals import Signals
from .tables import unknown_key

__all__ = ["Objective"]


class Objective:
    """Base class of objective plugins. Override :meth:`num_features`, :meth:`examples`; and
    :meth:`configure`, :meth:`outputs`, :meth:`predict_inputs`, :meth:`synthetic` as needed."""

    #: "classification" (``Example.label`` is a class index) or "regression"
    #: (``Example.target`` is the value); the task's model must be of the same kind.
    task: ClassVar[Literal["classification", "regression"]] = "classification"
    #: The signal types it reads (keys of the signals object); docs and the extension use it.
    signals: ClassVar[tuple[str, ...]] = ("visits",)
    #: The model a task gets when its file has no ``[model] kind``.
    default_model: ClassVar[str] = "logreg"
    #: True when the input width is whatever the task's ``[model] num_features`` says (the
    #: objective then reads it from ``features["num_features"]``).
    width_from_model: ClassVar[bool] = False
    #: Parameters of ``[features]`` and their defaults; ``configure`` refuses any other key.
    defaults: ClassVar[Mapping[str, Any]] = {}

    def configure(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """The complete ``[features]``: defaults filled in, values checked. Raises ValueError
        naming the key (``"num_buckets: ..."``); the default refuses unknown keys and values
        of another type than the default's."""
        error = unknown_key("", features, self.defaults)
        if error is not None:
            raise ValueError(error)
        out = dict(self.defaults)
        for key, value in features.items():
            default = self.defaults[key]
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, type(default) if not isinstance(default, float) else (int, float)
            ):
                kind = type(default).__name__
                article = "an" if kind[0] in "aeiou" else "a"
                raise ValueError(f"{key}: {article} {kind}, like {default!r}")
            out[key] = float(value) if isinstance(default, float) else value
        return out

    def num_features(self, features: Mapping[str, Any]) -> int:
        """The input width F for these (configured) features."""
        raise NotImplementedError

    def outputs(self, features: Mapping[str, Any]) -> list[str]:
        """Names of the model's outputs: the classes (their count is ``num_classes``), or one
        name for a regression."""
        return ["no", "yes"] if self.task == "classification" else ["value"]

    def examples(self, signals: Signals, features: Mapping[str, Any], now: float) -> list[Example]:
        """The labelled examples the local signals give at ``now`` (seconds since the epoch):
        what training and evaluation use."""
        raise NotImplementedError

    def predict_inputs(
        self, signals: Signals, features: Mapping[str, Any], now: float
    ) -> Sequence[tuple[str, Example]]:
        """What ``predict()`` scores at ``now``: ``(item, example)`` pairs, the item naming what
        the scores are about (a host, "next", ...). Labels are ignored. Default: nothing."""
        return []

    def synthetic(
        self,
        user_seed: int,
        features: Mapping[str, Any],
        days: float,
        start: float,
        population: Mapping[str, Any],
    ) -> Signals:
        """``days`` of one synthetic user's signals from ``start`` (epoch seconds), for the
        emulator; deterministic per seed. ``population`` holds the population file's knobs
        (``heterogeneity``, ``zipf_s``) for the objective to use as it sees fit. Raises
        NotImplementedError if the objective has none."""
        raise NotImplementedError
