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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .accountant import RoundEvent, epsilon, ftrl_epsilon
from .config import PrivacyConfig

__all__ = ["BudgetCheck", "PrivacyLedger"]


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

    @property
    def reason(self) -> str:
        """Why the round may not run ('' when it may)."""
        if self.allowed:
            return ""
        return (
            f"privacy budget exhausted: after {self.rounds_released} released round(s) "
            f"ε = {self.spent:.4g}; one more would make ε = {self.after:.4g} > budget "
            f"{self.budget:g} (δ = {self.delta:.3g}, {self.accountant} accountant)"
        )


@dataclass(slots=True)
class PrivacyLedger:
    """What a task has released: one ``RoundEvent`` per round, and its current ε."""

    config: PrivacyConfig
    events: list[RoundEvent] = field(default_factory=list)
    spent: float = 0.0

    @classmethod
    def from_entries(
        cls, config: PrivacyConfig, entries: Iterable[tuple[float, float, float]]
    ) -> PrivacyLedger:
        """Rebuild from stored ``(q, z, epsilon after the round)`` triples, in round order."""
        ledger = cls(config)
        for q, z, eps in entries:
            ledger.events.append(RoundEvent(q, z))
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
        c = self.config
        if c.ftrl:
            rounds = len(self.events) + 1
            after = ftrl_epsilon(c.noise_multiplier, c.min_separation, rounds, c.delta)
        else:
            after = epsilon([*self.events, self.next_event()], c.delta, c.accountant)
        return BudgetCheck(
            allowed=after <= c.epsilon,
            spent=self.spent,
            after=after,
            budget=c.epsilon,
            delta=c.delta,
            rounds_released=len(self.events),
            accountant=c.accountant,
        )

    def record(self, event: RoundEvent, epsilon_after: float) -> None:
        self.events.append(event)
        self.spent = epsilon_after
