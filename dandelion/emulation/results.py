"""What an emulation run reports: one record per round and the run's summary (the files they
go into are ``resultfiles.py``'s).

Wall-clock figures are kept apart from the rest: a run on virtual time gives the same rounds,
models and counters for the same seed, but never the same wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .provenance import RunInfo

__all__ = ["DROPPED_PARTS", "WALL_FIELDS", "RoundRecord", "RunResult"]

#: What a round's ``dropped`` is made of (``RoundOutcome.dropped_by``; docs/emulation.md).
DROPPED_PARTS = ("left", "unfinished", "rejected")
#: The fields of a record that depend on the wall clock.
WALL_FIELDS = ("wall_s",)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """One closed round, as the emulator saw it. ``left``, ``unfinished`` and ``rejected``
    sum to ``dropped``; None where the coordinator's split is not known (rounds read back
    from a state file)."""

    round: int
    status: str  # completed | abandoned
    assigned: int
    reported: int
    dropped: int
    left: int | None  # the worker went away before reporting (disconnect, offline, opt-out)
    unfinished: int | None  # still out at the close (over-selected, slow, silent)
    rejected: int | None  # its report was refused
    accuracy: float | None  # the model after the round, on held-out users (None: regression)
    loss: float | None  # held-out log-loss of that model (mean half squared error: regression)
    train_loss: float | None  # workers' reported loss of the model they received
    epsilon: float | None  # a private task's ε (at its δ) after the round, from its ledger
    virtual_s: float  # virtual time at the close, since the start
    sessions: int  # devices with a running worker at the close
    wall_s: float  # wall time at the close, since the start

    @property
    def participation(self) -> float:
        return self.reported / self.assigned if self.assigned else 0.0

    def figures(self) -> dict[str, Any]:
        """The record without its wall-clock fields (non-finite numbers as None)."""
        return {
            f.name: _finite(getattr(self, f.name))
            for f in fields(self)
            if f.name not in WALL_FIELDS
        }


@dataclass
class RunResult:
    mode: str
    backend: str
    population: int
    rounds: list[RoundRecord] = field(default_factory=list)
    wall_s: float = 0.0
    virtual_s: float = 0.0
    peak_rss_mb: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    params: Any = None  # the final model (numpy array), not serialized
    model_version: int = 0  # the final model's version
    stopped: str = ""  # why the run ended (docs/emulation.md, Results)
    warnings: list[str] = field(default_factory=list)
    info: RunInfo | None = None  # seed, population, task, data, code (set by emulate())
    started_at: float = 0.0  # UTC seconds when the run started (for timing.json only)

    @property
    def completed(self) -> list[RoundRecord]:
        return [r for r in self.rounds if r.status == "completed"]

    @property
    def epsilon(self) -> float | None:
        """A private task's ε after the run (None without privacy)."""
        known = [r.epsilon for r in self.rounds if r.epsilon is not None]
        return known[-1] if known else None

    def dropped_by(self) -> dict[str, int | None]:
        """Each part of ``dropped`` over the run's rounds (None if a round's is not known)."""
        out: dict[str, int | None] = {}
        for part in DROPPED_PARTS:
            values = [getattr(r, part) for r in self.rounds]
            out[part] = None if None in values else sum(values)
        return out

    def figures(self) -> dict[str, Any]:
        """The summary's figures that do not depend on the wall clock."""
        done = self.completed
        final = done[-1] if done else None
        return {
            "rounds": len(done),
            "rounds_abandoned": len(self.rounds) - len(done),
            "reports": sum(r.reported for r in done),
            "dropped": sum(r.dropped for r in self.rounds),
            "dropped_by": self.dropped_by(),
            "virtual_s": round(self.virtual_s, 1),
            "final_accuracy": _rounded(final.accuracy if final else None),
            "final_loss": _rounded(final.loss if final else None),
            "epsilon": self.epsilon,
            "stopped": self.stopped,
        }

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: the figures, with wall time and memory."""
        info = self.info
        figures = self.figures()
        reports = figures["reports"]
        return {
            "mode": self.mode,
            "backend": self.backend,
            "population": self.population,
            "seed": info.seed if info is not None else None,
            "code": dict(info.code) if info is not None else None,
            **figures,
            "wall_s": round(self.wall_s, 3),
            "clients_per_s": round(reports / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "counters": dict(sorted(self.counters.items())),
            "warnings": list(self.warnings),
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None and math.isfinite(value) else None


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
