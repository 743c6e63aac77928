"""Selection: which open round a checking-in worker joins, or when it should come back.

Rules of this file: it reads the tasks' open rounds and assigns; it never awaits and never reads
the clock. A worker that lost its task (it reconnected) is handed the same assignment back; one
that already reported is asked back after the round; those turned away from a full round are
ranked: the first few (about as many as the over-selection margin, slots that may free up as
assignments lapse) are asked back soon, the rest when the round is expected to close
(``PaceSteering.turned_away``).
Under ``[privacy]`` the mechanism's rule comes first: with Poisson participation a worker joins
only if its coin for the round says so (``not_sampled`` otherwise, and no cap); under DP-FTRL
only if its last participation is at least ``min_separation`` released rounds back
(``separation`` otherwise). Evaluation rounds select first come, first served, under privacy
too: their release is charged as if every worker took part.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ..protocol import Checkin, ComeBack
from .pace import PaceSteering
from .rounds import Assignment
from .runtime import Round, TaskRuntime

__all__ = ["Selection", "select"]

Selection = tuple[TaskRuntime, Round, Assignment]


def select(
    runtimes: Iterable[TaskRuntime],
    worker_id: str,
    checkin: Checkin,
    now: float,
    pace: PaceSteering,
    rng: random.Random,
) -> Selection | ComeBack:
    wanted = set(checkin.tasks) if checkin.tasks is not None else None
    eligibility = checkin.eligibility or {}
    candidates: list[tuple[TaskRuntime, Round]] = []
    reason, not_before = "no_task", None
    full: tuple[TaskRuntime, Round] | None = None
    for runtime in runtimes:
        if wanted is not None and runtime.name not in wanted:
            continue
        rnd = runtime.round
        if runtime.status != "active" or rnd is None or not rnd.open:
            if runtime.status in ("paused", "budget_exhausted") and reason == "no_task":
                reason = runtime.status
            continue
        if any(eligibility.get(k) is not True for k, v in runtime.config.eligibility.items() if v):
            reason = "not_eligible" if reason in ("no_task", "paused") else reason
            continue
        mine = rnd.assignment_of(worker_id)
        if mine is not None and mine.state in ("pending", "reported"):
            reason, not_before = "already_reported", rnd.deadline
            continue
        if mine is not None and mine.state == "active":
            # The worker lost its task (reconnect): hand the same assignment back.
            return runtime, rnd, mine
        if rnd.poisson and not rnd.sampled(worker_id):
            # Its coin for this round said no, once and for all: come back next round.
            reason, not_before = "not_sampled", rnd.deadline
            continue
        if rnd.kind == "train" and not runtime.separated(worker_id):
            # DP-FTRL: it took part too recently; the separation is what the ε rests on (an
            # evaluation round is charged on its own, whoever takes part).
            reason, not_before = "separation", rnd.deadline
            continue
        if rnd.needed > 0:
            candidates.append((runtime, rnd))
        else:
            reason, not_before = "round_full", None
            full = full or (runtime, rnd)
    if candidates:
        weights = [rnd.needed for _, rnd in candidates]
        runtime, rnd = rng.choices(candidates, weights=weights)[0]
        return runtime, rnd, rnd.assign(worker_id, now)
    if full is not None:
        runtime, rnd = full
        rank, rnd.turned_away = rnd.turned_away, rnd.turned_away + 1
        plan = rnd.plan
        window = pace.turned_away(
            now,
            rank=rank,
            soon=max(1, plan.max_assigned - plan.goal),
            closes_at=rnd.expected_close(now, runtime.report_latency_s),
            need=plan.max_assigned,
        )
        return ComeBack(window, reason)
    return ComeBack(pace.window(now, not_before=not_before), reason)
