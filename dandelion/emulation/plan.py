"""What every emulation mode sets up the same way: the task, the devices' data source and the
held-out evaluation of each round's model.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from browser_worker.datasets import EPOCH
from browser_worker.training import evaluate
from dandelion.taskspec.models import ModelSpec

from ..coordinator import TaskConfig, TaskConfigError
from ..taskspec.objective import Objective
from ..taskspec.registry import objective
from .behaviour import Behaviour
from .localdata import DataSource, LocalData, SyntheticSource, TableSource
from .population import PopulationConfig, PopulationConfigError, default_task
from .tableformat import check_for_task
from .trace import Trace

__all__ = ["EmulationPlan", "Evaluator", "make_plan"]

_DAY = 86400.0


@dataclass(frozen=True)
class EmulationPlan:
    config: PopulationConfig
    task: TaskConfig
    source: DataSource
    epoch: float  # UTC seconds at virtual time 0
    trace: Trace | None = None  # availability, bandwidth and speed replayed from a trace

    @property
    def size(self) -> int:
        return self.config.size

    def behaviour(self) -> Behaviour:
        """The devices' behaviour: the population file's model, or the trace's replay."""
        if self.trace is None:
            return Behaviour(self.config, self.epoch)
        from .tracebehaviour import TraceBehaviour

        return TraceBehaviour(self.config, self.epoch, self.trace)


def make_plan(
    config: PopulationConfig,
    *,
    task: dict[str, Any] | None = None,
    source: DataSource | None = None,
    trace: Trace | None = None,
) -> EmulationPlan:
    """The task (``task``, else the population file's ``[task]``, else the default revisit task
    with a goal of a tenth of the population) and the data source its features need. A task's
    ``[evaluation]`` is left out: the emulator scores every round's model on held-out users
    itself (:class:`Evaluator`), and its devices hold nothing out. A data table must hold
    at least ``size`` devices and labels the task's model can learn; a trace may name only
    devices below ``size``."""
    raw = task or config.task or default_task(max(1, min(1000, config.size // 10)), config.rounds)
    raw = {k: v for k, v in raw.items() if k != "evaluation"}
    raw = {**raw, "rounds": {**raw.get("rounds", {})}}
    raw["rounds"].setdefault("max_rounds", config.rounds)
    try:
        task_config = TaskConfig.from_dict(raw)
    except TaskConfigError as exc:
        raise PopulationConfigError(f"task.{exc}") from None
    if task_config.secure_aggregation is not None:
        # The emulator's devices send plain updates; secure rounds run with real workers
        # (browser_worker.Worker) against `dandelion serve`: docs/secure_aggregation.md.
        raise PopulationConfigError(
            "task.secure_aggregation: the emulator does not run secure rounds; run "
            "browser_worker workers against `dandelion serve` (docs/secure_aggregation.md)"
        )
    if source is None:
        plugin = objective(task_config.objective)
        if type(plugin).synthetic is Objective.synthetic:
            raise PopulationConfigError(
                f"task.objective: {task_config.objective} has no synthetic generator "
                "(Objective.synthetic); give the devices' data with --data"
            )
        source = SyntheticSource(
            seed=config.seed,
            heterogeneity=config.heterogeneity,
            history_days=config.history_days,
            test_users=config.test_users,
            zipf_s=config.zipf_s,
            objective=task_config.objective,
            task_features=tuple(sorted(task_config.features.items())),
        )
    if source.num_features != task_config.model.num_features:
        raise PopulationConfigError(
            f"task.model: {task_config.model.num_features} features, but the devices' data has "
            f"{source.num_features}"
        )
    if isinstance(source, TableSource):
        if source.devices < config.size:
            raise PopulationConfigError(
                f"population.size: {config.size} devices, but the data table {source.path} "
                f"holds {source.devices} (use --workers {source.devices} or fewer)"
            )
        check_for_task(
            source.table,
            source.path,
            num_classes=task_config.model.num_classes,
            regression=task_config.model.model.task == "regression",
        )
    if trace is not None and trace.devices > config.size:
        raise PopulationConfigError(
            f"population.size: {config.size} devices, but the trace names device "
            f"{trace.devices - 1} (devices are 0 .. size - 1)"
        )
    epoch = EPOCH + config.history_days * _DAY + config.start_hour_utc * 3600.0
    return EmulationPlan(config, task_config, source, epoch, trace)


class Evaluator:
    """The held-out figures of a model: for a classifier, log-loss and accuracy; for a
    regression model, the mean half squared error (the loss workers report; the RMSE is
    sqrt(2 x loss)) and no accuracy (None). The same figures ``browser_worker.training.evaluate``
    gives, vectorized: by hand for logreg, through the model's ``predict_many`` for other kinds
    that have one (in chunks of ``CHUNK`` rows)."""

    CHUNK = 2048

    def __init__(self, spec: ModelSpec, test: LocalData) -> None:
        self.spec = spec
        self.test = test
        self.regression = spec.model.task == "regression"

    def __call__(self, params: np.ndarray) -> tuple[float, float | None]:
        test = self.test
        if len(test) == 0:
            return math.nan, None if self.regression else math.nan
        if self.spec.kind == "logreg":
            return self._logreg(params.astype(np.float64))
        try:
            scores = self._scores(params.astype(np.float64))
        except NotImplementedError:
            loss, accuracy = evaluate(self.spec, params.astype(np.float64).tolist(), test)
            return loss, None if self.regression else accuracy
        if self.regression:
            targets = test.targets if test.targets is not None else np.zeros(len(test))
            return float(0.5 * np.mean((scores[:, 0] - targets) ** 2)), None
        labels = test.labels.astype(np.int64)
        prob = scores[np.arange(len(test)), labels]
        loss = float(-np.log(np.maximum(prob, 1e-300)).mean())
        return loss, float((scores.argmax(axis=1) == labels).mean())

    def _scores(self, w: np.ndarray) -> np.ndarray:
        test, f = self.test, self.spec.num_features
        parts = []
        for start in range(0, len(test), self.CHUNK):
            idx = test.indices[start : start + self.CHUNK]
            rows, cols = np.nonzero(idx >= 0)
            dense = np.zeros((idx.shape[0], f))
            np.add.at(
                dense, (rows, idx[rows, cols]), test.values[start : start + self.CHUNK][rows, cols]
            )
            parts.append(np.asarray(self.spec.model.predict_many(self.spec, w, dense)))
        return np.concatenate(parts)

    def _logreg(self, w: np.ndarray) -> tuple[float, float]:
        test = self.test
        idx = test.indices
        z = w[self.spec.num_features] + np.where(
            idx >= 0, w[np.maximum(idx, 0)] * test.values, 0.0
        ).sum(axis=1)
        p = 1.0 / (1.0 + np.exp(-z))
        y = test.labels == 1
        prob = np.where(y, p, 1.0 - p)
        loss = float(-np.log(np.maximum(prob, 1e-300)).mean())
        accuracy = float(((p > 1.0 - p) == y).mean())
        return loss, accuracy


def worker_rng(seed: int, device: int, session: int) -> random.Random:
    """The random source of one device's worker in one session (jitter in retry windows)."""
    return random.Random((seed << 40) ^ (device << 12) ^ session)
