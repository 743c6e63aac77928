"""An evaluation round: workers score the latest model on their held-out examples.

Rules of this file: like ``rounds.py`` — it decides whether a report belongs to the round and
folds it in; it never awaits, never reads the clock, never stores anything. Everything about
assignments, batches, checkpoints and closing is the round base's (``rounds.RoundBase``): an
evaluation report is acknowledged once a checkpoint of at least k reports holds it, exactly as
an update, and an evaluation round resumes after a crash the same way.

What differs is what is summed and what comes out. Each ``eval_report`` carries three sums over
one worker's held-out examples; they are bounded (``dandelion.aggregation.evaluation``) and
added. At its close the round releases the sums — noised under ``[privacy]``
(``dandelion.privacy.evaluation``) — and their means, but only with at least k reports (the
monitoring threshold): with fewer it is recorded as *withheld*, and nothing computed from its
reports is kept. Below its minimum it is abandoned, like a training round, but not retried:
training goes on, and the next evaluation comes ``every`` training rounds later. The model
does not change, and the round does not count towards ``max_rounds``.

A regression model (``Model.task``, from the task-spec layer) has no right or wrong: its
workers send ``correct`` 0, the round counts none whatever a report says, and its result has no
``correct`` and no accuracy (the loss is the model's own, half the squared error for the
built-in ``linreg``).
"""

from __future__ import annotations

import numpy as np

from ..aggregation import EvalBounds, EvalSums, UpdateRejected
from ..privacy.evaluation import EvalRelease, release_sums
from ..protocol import EvalReport
from ..storage import EvaluationRecord
from .rounds import Batch, RoundBase
from .taskconfig import EvaluationPlan, TaskConfig

__all__ = ["EvalRound"]


class EvalRound(RoundBase[EvalSums]):
    """An evaluation round of model version ``model_version``; ``release`` is its output once
    it has closed with at least k reports."""

    kind = "evaluate"

    def __init__(
        self,
        config: TaskConfig,
        number: int,
        model_version: int,
        model_frame: bytes,
        opened_at: float,
        *,
        secret: str,
        step: int,
    ) -> None:
        plan = config.evaluation
        if plan is None:
            raise ValueError(f"task {config.name!r} has no [evaluation]")
        super().__init__(
            config,
            number,
            model_version,
            model_frame,
            opened_at,
            secret=secret,
            step=step,
            plan=plan.rounds(config.rounds),
        )
        self.evaluation: EvaluationPlan = plan
        self.bounds = EvalBounds(plan.max_examples, plan.max_loss)
        #: Whether the model classifies (else a regression: no accuracy).
        self.classifies = config.model.model.task != "regression"
        self.release: EvalRelease | None = None

    def _empty(self) -> EvalSums:
        return EvalSums()

    def _restore(self, data: bytes) -> EvalSums:
        return EvalSums.from_bytes(data)

    def add(self, worker_id: str, report: EvalReport, now: float) -> Batch[EvalSums]:
        """Bound and add one report's sums to the open batch; return that batch. Raises
        UpdateRejected before anything changes."""
        m = report.metrics
        try:
            correct = m["correct"] if self.classifies else 0
            self.batch.aggregate.add(m["count"], m["loss_sum"], correct, self.bounds)
        except (KeyError, TypeError, ValueError) as exc:
            # The wire contract refuses such sums before they get here; kept as a floor.
            raise UpdateRejected("non_finite", f"eval_report sums out of bounds: {exc}") from None
        return self._took(worker_id, now)

    def conclude(
        self, rng: np.random.Generator | None, k: int, closed_at: float
    ) -> EvaluationRecord | None:
        """The round's result once closed: None when abandoned (below its minimum), a withheld
        record below ``k`` reports, else the release (noised with ``rng`` under privacy)."""
        final = self.final
        assert final is not None, "close() first"
        if self.abandoned:
            return None
        z = self.evaluation.noise_multiplier if self.config.privacy is not None else None
        withheld = final.count < k
        if not withheld:
            self.release = release_sums(final, self.bounds, z, rng)
        r = self.release
        scored = r if self.classifies else None  # a regression has no right or wrong
        return EvaluationRecord(
            task=self.config.name,
            round=self.number,
            model_version=self.model_version,
            reports=final.count,
            withheld=withheld,
            count=r.count if r is not None else None,
            loss_sum=r.loss_sum if r is not None else None,
            correct=scored.correct if scored is not None else None,
            loss=r.loss if r is not None else None,
            accuracy=scored.accuracy if scored is not None else None,
            noise_multiplier=z,
            opened_at=self.opened_at,
            closed_at=closed_at,
        )

    def reopen(self, batch: Batch[EvalSums]) -> None:
        super().reopen(batch)
        self.release = None

    def metrics(self) -> dict[str, float]:
        """What the round record keeps: the released means (and ε after the round, under
        privacy); nothing when withheld or abandoned."""
        r = self.release
        if r is None:
            return {}
        accuracy = r.accuracy if self.classifies else None
        out = {k: v for k, v in (("loss", r.loss), ("accuracy", accuracy)) if v is not None}
        if self.epsilon_after is not None:
            out["epsilon"] = self.epsilon_after
        return out

    def waiting(self, now: float, k: int, *, cluster_reports: int | None = None) -> str:
        words = super().waiting(now, k, cluster_reports=cluster_reports)
        words = words.replace("still training", "still scoring")
        return f"evaluating model version {self.model_version}: {words}"
