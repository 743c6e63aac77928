"""Whether a population can run its task: checked before the run, from the population file's
own knobs (size, consent, eligibility, availability) and the task's round and privacy plans;
and, during the run, when to give up on rounds that keep being abandoned.

Each problem is one line that says what to change. The figures are upper bounds (every
eligible device online at its busiest hour, and checking in during the round), so a warning
means the goal cannot be met, not merely that it may not be. WebSocket mode starts every
device opted in and keeps it online: there only eligibility (and privacy sampling) limits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from ..coordinator import TaskConfig
from ..privacy import PrivacyLedger
from .plan import EmulationPlan
from .population import PopulationConfig
from .results import RoundRecord

__all__ = [
    "ABANDONED_IN_A_ROW",
    "AbandonWatch",
    "Capacity",
    "StartCheck",
    "capacity",
    "start_check",
]

#: Rounds abandoned in a row after which a run may stop (AbandonWatch says when it does).
ABANDONED_IN_A_ROW = 20
_DAY = 86400.0
_QUANTILES = 256


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a population can give a task at best: ``eligible`` devices ever opted in and
    eligible, ``online`` of them online at once (at their busiest hour)."""

    eligible: float
    online: float


def capacity(config: PopulationConfig, task: TaskConfig, *, all_online: bool = False) -> Capacity:
    """``all_online``: every device opted in and online, as in WebSocket mode (which starts
    every device's worker and keeps it connected); eligibility still applies."""
    share = 1.0 if config.opt_in_per_day > 0 or all_online else config.initially_opted_in
    for fact, wanted in sorted(task.eligibility.items()):
        if wanted:
            share *= float(getattr(config, fact))
    eligible = config.size * share
    return Capacity(eligible, eligible if all_online else eligible * _online_share(config))


def _online_share(config: PopulationConfig) -> float:
    """The mean over devices of the chance of being online in the busiest hour: ``peak_online``
    times each device's log-normal activity factor, capped at 1."""
    if config.availability == "always":
        return 1.0
    sigma, peak = config.activity_sigma, config.peak_online
    normal = NormalDist()
    total = 0.0
    for i in range(_QUANTILES):
        z = normal.inv_cdf((i + 0.5) / _QUANTILES)
        total += min(1.0, peak * math.exp(sigma * z))
    return total / _QUANTILES


@dataclass(frozen=True, slots=True)
class StartCheck:
    """One line per reason the population cannot run the task as configured; ``doomed``: its
    rounds cannot reach their minimum (the budget warning alone does not doom them)."""

    warnings: list[str]
    doomed: bool


def start_check(plan: EmulationPlan, mode: str = "inprocess") -> StartCheck:
    """The start-up check for a run in ``mode``: in-process, the population file's consent and
    availability (or the trace's); in WebSocket mode, every device opted in and online."""
    config, task = plan.config, plan.task
    rounds, privacy = task.rounds, task.privacy
    best = capacity(config, task, all_online=mode == "websocket")
    if plan.trace is not None:  # online at once: the trace's peak, not the diurnal model's
        share = best.eligible / config.size
        best = Capacity(best.eligible, plan.trace.peak_online() * share)
    minimum = rounds.minimum
    out: list[str] = []
    per_device = best.online / config.size
    if privacy is not None and privacy.poisson:
        q = privacy.sampling_rate
        expected = q * best.online
        if expected < minimum:
            needed = _devices(minimum / q, per_device)
            out.append(
                f"task {task.name}: each device takes part in a round with probability q = "
                f"rounds.goal / privacy.population = {q:.3g}, so this population gives at "
                f"most about {expected:.1f} reports per round ({best.online:.0f} of its "
                f"{config.size} devices online at once), and a round needs rounds.min_reports "
                f"= {minimum}: every round will be abandoned. Emulate {needed} devices or more "
                "(population.size, --workers), or lower rounds.goal, rounds.min_reports and "
                "privacy.population together (q, and so ε, changes: docs/privacy.md)"
            )
    elif best.online < minimum:
        out.append(
            f"task {task.name}: at most about {best.online:.0f} of the {config.size} devices "
            f"are opted in, eligible and online at once, and a round needs rounds.min_reports "
            f"= {minimum} (goal {rounds.goal}): every round will be abandoned. Emulate "
            f"{_devices(minimum, per_device)} devices or more (population.size, --workers), "
            "or lower rounds.goal and rounds.min_reports (--cohort)"
        )
    if privacy is not None and privacy.ftrl:
        needed_distinct = privacy.min_separation * minimum
        if best.eligible < needed_distinct:
            out.append(
                f"task {task.name}: under DP-FTRL a device takes part at most once in "
                f"privacy.min_separation = {privacy.min_separation} rounds, so those rounds "
                f"need {needed_distinct} distinct devices ({minimum} each), and at most about "
                f"{best.eligible:.0f} are opted in and eligible: rounds will be abandoned. "
                f"Emulate {_devices(needed_distinct, best.eligible / config.size)} devices or "
                "more, or lower rounds.min_reports or privacy.min_separation"
            )
    doomed = bool(out)
    if privacy is not None:
        budget = _budget_warning(task, config.rounds)
        if budget:
            out.append(budget)
    return StartCheck(out, doomed)


def _devices(reports: float, per_device: float) -> str:
    if per_device <= 0:
        return "opted-in, eligible, online"  # no device ever is: the knobs must change
    return f"{math.ceil(reports / per_device):,}"


def _budget_warning(task: TaskConfig, rounds: int) -> str:
    """Whether the privacy budget lasts ``rounds`` released rounds, as the coordinator's own
    ledger (its budget rule) reckons it."""
    privacy = task.privacy
    assert privacy is not None

    def check(n: int) -> tuple[bool, float]:
        ledger = PrivacyLedger(privacy)
        ledger.events = [ledger.next_event()] * (n - 1)
        found = ledger.check_next()
        return found.allowed, found.after

    allowed, after = check(rounds)
    if allowed:
        return ""
    lo, hi = 0, rounds  # check(lo) allowed (0 rounds: always), check(hi) not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid)[0]:
            lo = mid
        else:
            hi = mid
    return (
        f"task {task.name}: the privacy budget privacy.epsilon = {privacy.epsilon:g} lasts "
        f"{lo} released round(s) (δ = {privacy.delta:.3g}); {rounds} would spend ε = "
        f"{after:.4g}, so the coordinator stops the task (budget_exhausted) after {lo}. Run "
        "fewer rounds (--rounds), or raise privacy.epsilon or privacy.noise_multiplier"
    )


class AbandonWatch:
    """When to stop a run whose rounds keep being abandoned: once ``ABANDONED_IN_A_ROW``
    rounds in a row were, if the start-up check warned that the population cannot meet the
    task (``doomed``) or the run is in real time (WebSocket mode, every device online);
    otherwise (virtual time) once they also span a whole day, through which availability
    goes round its daily cycle."""

    def __init__(self, *, doomed: bool, virtual: bool) -> None:
        self.doomed = doomed
        self.virtual = virtual
        self.in_a_row = 0
        self.since = 0.0  # virtual time at the close of the last completed round

    def closed(self, record: RoundRecord) -> str | None:
        """A round closed; the reason to stop, if the run should."""
        if record.status != "abandoned":
            self.in_a_row, self.since = 0, record.virtual_s
            return None
        self.in_a_row += 1
        span = record.virtual_s - self.since
        if self.in_a_row < ABANDONED_IN_A_ROW:
            return None
        if self.virtual and not self.doomed and span < _DAY:
            return None
        over = f" over {span / 3600:.1f} h of virtual time" if self.virtual else ""
        return (
            f"stopped after {self.in_a_row} rounds in a row were abandoned{over} (below "
            "their rounds.min_reports): the population does not meet the task's goal"
        )
