"""The budget rule: a round whose release would take ε past the task's budget is not started.

``PrivacyLedger`` is the in-memory view of a task's persisted ledger (one entry per released
round); it knows what was spent and what one more round would cost. Storage keeps the entries
(``dandelion.storage``), the coordinator asks before opening each round and writes the entry in
the same transaction as the round's model. Only released rounds spend: an abandoned or
interrupted round publishes nothing computed from its updates.

Under DP-FTRL (``config.ftrl``) a round is one step of a tree of ``min_separation`` steps: its
event is ``RoundEvent(1.0, z)`` (no sampling is assumed) and what one more round costs is
:func:`~dandelion.privacy.accountant.ftrl_epsilon` of the number of rounds released so far plus
one; the entries keep the same ``(q, z, ε)`` shape.

A released evaluation round (``dandelion.privacy.evaluation``) is charged too, as its own
``RoundEvent(1.0, z / √3)`` — a Gaussian mechanism, no sampling — kept apart from the training
rounds (``evaluations``) so that the rounds of DP-FTRL's trees are still counted alone, and
composed with them by the task's accountant: ε always covers both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .accountant import RoundEvent, epsilon, ftrl_epsilon
from .config import PrivacyConfig

__all__ = ["BudgetCheck", "PrivacyLedger"]

_Row = tuple[float, float, float, str]


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """The answer to "may round ``round`` run?"."""

    allowed: bool
    spent: float  # ε after the rounds released so far
    after: float  # ε if this round is released too
    budget: float
    delta: float
    rounds_released: int
    accountant: str
    evaluations_released: int = 0
    what: str = "round"  # what would be released: "round" or "evaluation"

    @property
    def reason(self) -> str:
        """Why the round may not run ('' when it may)."""
        if self.allowed:
            return ""
        evaluations = (
            f" and {self.evaluations_released} evaluation(s)" if self.evaluations_released else ""
        )
        return (
            f"privacy budget exhausted: after {self.rounds_released} released round(s)"
            f"{evaluations} ε = {self.spent:.4g}; one more {self.what} would make "
            f"ε = {self.after:.4g} > budget {self.budget:g} (δ = {self.delta:.3g}, "
            f"{self.accountant} accountant)"
        )


@dataclass(slots=True)
class PrivacyLedger:
    """What a task has released: one ``RoundEvent`` per training round (``events``) and per
    evaluation round (``evaluations``), and its current ε (of both)."""

    config: PrivacyConfig
    events: list[RoundEvent] = field(default_factory=list)
    spent: float = 0.0
    evaluations: list[RoundEvent] = field(default_factory=list)

    @classmethod
    def from_entries(
        cls, config: PrivacyConfig, entries: Iterable[tuple[float, float, float] | _Row]
    ) -> PrivacyLedger:
        """Rebuild from stored ``(q, z, epsilon after the round[, kind])``, in round order
        (``kind``: "train", the default, or "evaluate")."""
        ledger = cls(config)
        for row in entries:
            q, z, eps = row[0], row[1], row[2]
            kind = row[3] if len(row) > 3 else "train"
            (ledger.evaluations if kind == "evaluate" else ledger.events).append(RoundEvent(q, z))
            ledger.spent = eps
        return ledger

    def next_event(self) -> RoundEvent:
        """The next round's event: q = 1 under DP-FTRL, which assumes no sampling."""
        if self.config.ftrl:
            return RoundEvent(1.0, self.config.noise_multiplier)
        return RoundEvent(self.config.sampling_rate, self.config.noise_multiplier)

    def check_next(self) -> BudgetCheck:
        """May one more round be released? Runs the accountant (about a second for PLD: call
        it off the event loop)."""
        return self._check([*self.events, self.next_event()], self.evaluations, "round")

    def check_evaluation(self, event: RoundEvent) -> BudgetCheck:
        """May one more evaluation round, charged ``event``, be released? (As slow.)"""
        return self._check(self.events, [*self.evaluations, event], "evaluation")

    def _epsilon(self, rounds: list[RoundEvent], evaluations: list[RoundEvent]) -> float:
        c = self.config
        if c.ftrl:
            gaussians = tuple(e.z for e in evaluations)
            z, n = c.noise_multiplier, c.min_separation
            return ftrl_epsilon(z, n, len(rounds), c.delta, gaussians)
        return epsilon([*rounds, *evaluations], c.delta, c.accountant)

    def _check(
        self, rounds: list[RoundEvent], evaluations: list[RoundEvent], what: str
    ) -> BudgetCheck:
        c = self.config
        after = self._epsilon(rounds, evaluations)
        return BudgetCheck(
            allowed=after <= c.epsilon,
            spent=self.spent,
            after=after,
            budget=c.epsilon,
            delta=c.delta,
            rounds_released=len(self.events),
            accountant=c.accountant,
            evaluations_released=len(self.evaluations),
            what=what,
        )

    def record(self, event: RoundEvent, epsilon_after: float) -> None:
        self.events.append(event)
        self.spent = epsilon_after

    def record_evaluation(self, event: RoundEvent, epsilon_after: float) -> None:
        self.evaluations.append(event)
        self.spent = epsilon_after
