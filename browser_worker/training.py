"""Local training: mini-batch SGD from the received model, then the clipped delta.

The update a worker sends is ``delta = trained - received``, scaled down to L2 norm
``clip_norm`` when it is longer (the coordinator clips again, whatever the worker says). Loss
and accuracy are measured on the local data with the *received* model, before training: that is
how the global model's quality is reported without a separate evaluation pass. For a regression
model the loss is the mean half squared error and the accuracy 0.0: there is none, and the
update message's metrics are the same for every task. An evaluation round's pass is
:func:`evaluate_sums`: the model's own loss and its predictions, as sums, on held-out examples.
Deterministic for a given ``rng``; standard library only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dandelion.taskspec.models import Example, ModelSpec, batch_loss_grad, predict_proba

__all__ = ["EvalSums", "Hyper", "LocalResult", "evaluate", "evaluate_sums", "train_local"]


@dataclass(frozen=True, slots=True)
class Hyper:
    learning_rate: float
    epochs: int
    batch_size: int
    clip_norm: float
    l2: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "clip_norm": self.clip_norm,
        }
        if self.l2:
            out["l2"] = self.l2
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Hyper:
        hyper = cls(
            learning_rate=float(raw["learning_rate"]),
            epochs=int(raw["epochs"]),
            batch_size=int(raw["batch_size"]),
            clip_norm=float(raw["clip_norm"]),
            l2=float(raw.get("l2", 0.0)),
        )
        if hyper.learning_rate <= 0 or hyper.epochs < 1 or hyper.batch_size < 1:
            raise ValueError("need learning_rate > 0, epochs >= 1, batch_size >= 1")
        if hyper.clip_norm <= 0 or hyper.l2 < 0:
            raise ValueError("need clip_norm > 0 and l2 >= 0")
        return hyper


@dataclass(frozen=True, slots=True)
class LocalResult:
    delta: Sequence[float]
    clipped_delta: Sequence[float]
    num_examples: int
    loss: float  # on local data, received model: log-loss, or half squared error
    accuracy: float  # on local data, received model; 0.0 for a regression model
    norm: float  # of delta, before clipping
    unclipped: bool  # norm <= clip_norm: the bit adaptive clipping needs


@dataclass(frozen=True, slots=True)
class EvalSums:
    """Sums over scored examples: how many, their summed loss, how many were right (always 0
    for a regression model)."""

    count: int
    loss_sum: float
    correct: int


def evaluate_sums(
    spec: ModelSpec,
    params: Sequence[float],
    examples: Sequence[Example],
    max_loss: float = math.inf,
) -> EvalSums:
    """The loss of ``params`` summed over ``examples`` and how many of them it gets right.

    Each example's loss is the model's own (``Model.loss_grad`` of that one example: the
    log-loss of a classifier, half the squared error of a regression, whatever a model of your
    own defines), clipped at ``max_loss``; a loss that is not a number counts as ``max_loss``.
    Right: the class of the highest score (``Model.predict``; on a tie the lower class wins) is
    the label; a regression model has no right or wrong, so ``correct`` is 0."""
    model = spec.model
    classifier = model.task != "regression"
    clip = math.isfinite(max_loss)
    loss, right = 0.0, 0
    for ex in examples:
        one = float(model.loss_grad(spec, params, [ex], {}))
        if clip and not one <= max_loss:  # NaN fails the test too
            one = max_loss
        loss += one
        if classifier:
            scores = predict_proba(spec, params, ex)
            best = max(range(len(scores)), key=scores.__getitem__)
            right += best == ex.label
    return EvalSums(len(examples), loss, right)


def evaluate(
    spec: ModelSpec, params: Sequence[float], examples: Sequence[Example]
) -> tuple[float, float]:
    """Mean log-loss and accuracy of ``params`` on ``examples``; for a regression model, the mean
    half squared error to ``Example.target`` and 0.0. (0.0, 0.0) when ``examples`` is empty."""
    if not examples:
        return 0.0, 0.0
    if spec.model.task == "regression":
        squared = 0.0
        for ex in examples:
            error = predict_proba(spec, params, ex)[0] - ex.target
            squared += error * error
        return 0.5 * squared / len(examples), 0.0
    loss, right = 0.0, 0
    for ex in examples:
        probs = predict_proba(spec, params, ex)
        loss -= math.log(max(probs[ex.label], 1e-300))
        best = max(range(len(probs)), key=probs.__getitem__)
        right += best == ex.label
    return loss / len(examples), right / len(examples)


def train_local(
    spec: ModelSpec,
    params: Sequence[float],
    examples: Sequence[Example],
    hyper: Hyper,
    rng: random.Random,
) -> LocalResult:
    """Run ``hyper.epochs`` of mini-batch SGD from ``params``; return the (clipped) delta."""
    if len(params) != spec.param_count:
        raise ValueError(f"{len(params)} parameters for a model of {spec.param_count}")
    loss, accuracy = evaluate(spec, params, examples)
    w = [float(p) for p in params]
    order = list(range(len(examples)))
    lr, l2, size = hyper.learning_rate, hyper.l2, hyper.batch_size
    for _ in range(hyper.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), size):
            batch = [examples[i] for i in order[start : start + size]]
            grad: dict[int, float] = {}
            batch_loss_grad(spec, w, batch, grad)
            step = lr / len(batch)
            # L2 decay is applied to the touched weights only ("lazy" regularisation).
            for i, g in grad.items():
                w[i] -= step * g + lr * l2 * w[i]
    delta = [a - b for a, b in zip(w, params, strict=True)]
    norm = math.sqrt(sum(d * d for d in delta))
    unclipped = norm <= hyper.clip_norm
    scale = 1.0 if unclipped else hyper.clip_norm / norm
    clipped = delta if unclipped else [d * scale for d in delta]
    return LocalResult(delta, clipped, len(examples), loss, accuracy, norm, unclipped)
