"""One live round: its assignments, its reports, and its aggregate in checkpointable steps.

Rules of this file: it decides whether an update belongs to the round and folds it into the
round's aggregate; it never awaits, never reads the clock (``now`` is passed in), never stores
anything. Individual updates are added and forgotten: memory is O(d + cohort).

Durability in steps. Reports accumulate in the open :class:`Batch`; the lifecycle seals a batch
once it holds at least ``step`` reports (k, the monitoring threshold; for the first checkpoint
of a round also its minimum), writes the aggregate over every sealed report together with the
batch's "reported" events, and only then acknowledges the batch's reports. So no stored
aggregate, nor the difference of two, covers fewer than ``step`` updates, and an acknowledged
update is in every later aggregate of its round. If the write fails the batch is dropped
whole: its reports are not counted, and their workers may send them again. Closing takes the
open batch into the round's result, which is committed with the model.

Assignments. A worker's nonce is an HMAC of the worker id under the round's secret: a resumed
round recognises the nonces it handed out before a crash, and a worker that comes back is
handed the same nonce. An assignment whose worker disconnected, went silent past its report
timeout or opted out is *released*: its slot is free for another worker, and its nonce stays
valid (a late report still counts).

Two kinds of round share all of that (:class:`RoundBase`) and differ in what they sum: a
training round (:class:`RoundState`) adds clipped updates into an ``Aggregate``; an evaluation
round (``evaluation.py``) adds bounded metric sums. Each has its own plan (goal, minimum,
deadline).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from ..aggregation import Aggregate, Contribution, decode_update, update_weight
from ..aggregation.errors import UpdateRejected
from ..privacy import Release, observed_bit
from ..privacy.aggregate import PrivateAggregate
from ..privacy.ftrl import TreeNoise
from ..privacy.mechanism import ftrl_release
from ..protocol import EvalReport, TensorFrame, Update
from .taskconfig import RoundPlan, TaskConfig

__all__ = ["Assignment", "Batch", "RoundBase", "RoundState", "Sums"]

_ACTIVE, _RELEASED, _PENDING, _REPORTED = "active", "released", "pending", "reported"
#: Reports a round needs before it times silent assignments out on its own measure.
_ADAPTIVE_AFTER = 5
_ADAPTIVE_FACTOR = 1.25
_ADAPTIVE_FLOOR_S = 0.2


@dataclass(slots=True)
class Assignment:
    worker_id: str
    nonce: str
    assigned_at: float
    state: str = _ACTIVE  # active | released | pending (in a batch) | reported (durable)


class Sums(Protocol):
    """What a round needs of its running sum, whatever it sums: how many reports it holds, a
    copy, the merge of another over other reports, a byte form for the checkpoint."""

    @property
    def count(self) -> int: ...

    def copy(self) -> Self: ...

    def merge(self, other: Self) -> None: ...

    def to_bytes(self) -> bytes: ...


@dataclass(slots=True)
class Batch[A: Sums]:
    """Reports added since the last checkpoint. ``waiter`` belongs to the lifecycle (the
    future its reports' acknowledgements wait on)."""

    aggregate: A
    workers: list[str] = field(default_factory=list)
    reported_at: list[float] = field(default_factory=list)
    waiter: Any = None

    @property
    def count(self) -> int:
        return self.aggregate.count


def assignment_nonce(
    secret: str, task: str, number: int, worker_id: str, *, keyed: hmac.HMAC | None = None
) -> str:
    """The HMAC of the assignment under ``secret``; ``keyed``: an HMAC object already keyed
    with it (copied, not keyed again: a round hands out a nonce per assignment)."""
    msg = f"{task}\0{number}\0{worker_id}".encode()
    if keyed is None:
        mac = hmac.digest(secret.encode(), msg, "sha256")
    else:
        h = keyed.copy()
        h.update(msg)
        mac = h.digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def participation_coin(secret: str, task: str, number: int, worker_id: str) -> float:
    """A uniform number in [0, 1) decided once per worker and round: an HMAC under the round's
    secret, so reconnecting never flips it again, and nobody without the secret can predict
    or steer it."""
    key = f"coin\0{task}\0{number}\0{worker_id}".encode()
    mac = hmac.digest(secret.encode(), key, "sha256")
    return int.from_bytes(mac[:8], "big") / 2**64


class RoundBase[A: Sums]:
    """A round from opening to closing, whatever it sums.

    ``model_frame`` is the round's model, encoded once and sent as the same bytes to every worker
    of the round: its header's nonce is a per-round tag, not an assignment nonce. ``plan`` is
    the round's goal, minimum and deadline; ``epsilon_after`` is what the ledger will say once a
    DP round is released; ``step`` is how many reports a checkpoint covers at least.
    """

    #: What the round asks of its workers, as the ``task`` message's ``kind`` says it.
    kind: ClassVar[str]

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
        plan: RoundPlan,
    ) -> None:
        self.config = config
        self.plan = plan
        self.number = number
        self.model_version = model_version
        self.model_frame = model_frame
        self.opened_at = opened_at
        self.deadline = opened_at + plan.deadline_s
        self.secret = secret
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self.step = max(1, step)
        self.epsilon_after: float | None = None
        self.open = True
        self.rejected = 0  # reports refused, whatever the reason
        self._refused: set[str] = set()  # assigned workers with a report refused
        self._silent: set[str] = set()  # released for staying silent past the report timeout
        self.committed: A = self._empty()
        self.batch: Batch[A] = self._new_batch()
        self.sealed: Batch[A] | None = None  # a batch whose checkpoint is being written
        self._assignments: dict[str, Assignment] = {}
        self._holding = 0  # assignments active, pending or reported: what over-selection caps
        self._latencies: list[float] = []
        self._slowest = 0.0  # max(_latencies), kept as they come (asked for on every tick)
        self._median: tuple[int, float] = (0, math.nan)  # (reports it covers, median latency)
        #: Workers sent away while the round was full: pace steering ranks them by this count.
        self.turned_away = 0
        self.final: A | None = None
        self.commit_failed = False  # a failed commit is logged once per round
        #: A cluster leader's: the other shards' checkpointed sums, merged at the close.
        self.elsewhere: A | None = None

    def _empty(self) -> A:
        """A sum over no reports."""
        raise NotImplementedError

    def _restore(self, data: bytes) -> A:
        """The sum a checkpoint holds. Raises ValueError when it does not fit the round."""
        raise NotImplementedError

    def _new_batch(self) -> Batch[A]:
        return Batch(self._empty())

    # -- resuming --------------------------------------------------------------------------------

    def resume(self, aggregate: bytes | None, selected: set[str], reported: set[str]) -> None:
        """Restore what a checkpoint holds: the aggregate of the acknowledged reports, and the
        assignments (released, but for those that reported: their connections are gone).
        Raises ValueError for a checkpoint that does not fit the round."""
        if aggregate is not None:
            restored = self._restore(aggregate)
            if restored.count != len(reported):
                raise ValueError(
                    f"checkpoint of round {self.number} holds {restored.count} reports; "
                    f"expected {len(reported)}"
                )
            self.committed = restored
        elif reported:
            raise ValueError(f"round {self.number} has reports but no checkpoint")
        task = self.config.name
        for worker in selected | reported:
            nonce = assignment_nonce(self.secret, task, self.number, worker)
            state = _REPORTED if worker in reported else _RELEASED
            self._assignments[worker] = Assignment(worker, nonce, self.opened_at, state)
        self._holding = len(reported)

    # -- selection -------------------------------------------------------------------------------

    @property
    def poisson(self) -> bool:
        """Each worker joins by its own coin; no cap, and the round closes at its deadline."""
        return False

    def sampled(self, worker_id: str) -> bool:
        """Under Poisson participation: whether this worker's coin for this round says yes."""
        privacy = self.config.privacy
        assert privacy is not None
        coin = participation_coin(self.secret, self.config.name, self.number, worker_id)
        return coin < privacy.sampling_rate

    @property
    def needed(self) -> int:
        """How many more workers the round would assign now (under Poisson participation: no
        cap, the coins decide)."""
        if not self.open:
            return 0
        if self.poisson:
            return 1
        return max(0, self.plan.max_assigned - self._holding)

    @property
    def assigned(self) -> int:
        """Workers ever assigned in this round (by a cluster's leader, with the others'
        reports merged)."""
        return len(self._assignments) + (self.elsewhere.count if self.elsewhere else 0)

    def assignment_of(self, worker_id: str) -> Assignment | None:
        return self._assignments.get(worker_id)

    def assign(self, worker_id: str, now: float) -> Assignment:
        """Assign ``worker_id`` (again: a released assignment is taken back with its nonce)."""
        mine = self._assignments.get(worker_id)
        if mine is None:
            nonce = assignment_nonce(
                self.secret, self.config.name, self.number, worker_id, keyed=self._keyed
            )
            mine = self._assignments[worker_id] = Assignment(worker_id, nonce, now)
            self._holding += 1
        elif mine.state == _RELEASED:
            mine.state, mine.assigned_at = _ACTIVE, now
            self._holding += 1
        return mine

    def free(self, worker_id: str, *, silent: bool = False) -> bool:
        """Free the slot of ``worker_id``'s assignment if it has not reported (``silent``: it
        stayed silent past the report timeout; else its worker went away). True if freed."""
        mine = self._assignments.get(worker_id)
        if mine is None or mine.state != _ACTIVE:
            return False
        mine.state = _RELEASED
        self._holding -= 1
        if silent:
            self._silent.add(worker_id)
        else:
            self._silent.discard(worker_id)
        return True

    def report_timeout(self) -> float:
        """How long an assignment may stay silent: the task's ``report_timeout_s``, or — when
        that is 0 — 1.25 times the slowest report so far once a few have come in (the deadline
        before)."""
        fixed = self.plan.report_timeout_s
        if fixed > 0:
            return fixed
        if len(self._latencies) < min(_ADAPTIVE_AFTER, self.plan.goal):
            return math.inf
        return max(_ADAPTIVE_FLOOR_S, _ADAPTIVE_FACTOR * self._slowest)

    def median_latency(self) -> float | None:
        """The median time from assignment to report over the round's reports so far; None
        before the first few (five, or the goal if smaller) have come in."""
        latencies = self._latencies
        if not latencies or len(latencies) < min(_ADAPTIVE_AFTER, self.plan.goal):
            return None
        covered = self._median[0]
        # Worked out again once the reports grew by a twentieth (it is an estimate; sorting the
        # round's latencies for every worker turned away would cost more than it tells).
        if len(latencies) != covered and (len(latencies) < 64 or len(latencies) >= 1.05 * covered):
            self._median = (len(latencies), statistics.median(latencies))
        return self._median[1]

    def expected_close(self, now: float, latency_s: float | None) -> float | None:
        """When a full round is expected to close, by its own reports' median latency (or
        ``latency_s``, the task's last round's, before it has its own): its last assignments
        report about that long from now. Never after the deadline; None without an estimate."""
        typical = self.median_latency()
        if typical is None:
            typical = latency_s
        if typical is None:
            return None
        return min(self.deadline, now + typical)

    def silent(self, now: float) -> list[str]:
        """Workers whose active assignment has waited longer than the report timeout."""
        timeout = self.report_timeout()
        if not math.isfinite(timeout):
            return []
        return [
            a.worker_id
            for a in self._assignments.values()
            if a.state == _ACTIVE and now - a.assigned_at > timeout
        ]

    # -- reporting -------------------------------------------------------------------------------

    def check(self, worker_id: str, update: Update | EvalReport) -> str | None:
        """Why ``update`` cannot count in this round, as a reject reason; None if it can."""
        mine = self._assignments.get(worker_id)
        if mine is None or not hmac.compare_digest(mine.nonce, update.nonce):
            return "not_assigned"
        if mine.state in (_PENDING, _REPORTED):
            return "duplicate"
        if not self.open:
            return "stale_round"
        return None

    def refused(self, worker_id: str) -> None:
        """A report of ``worker_id`` was refused by the round's checks."""
        self.rejected += 1
        if worker_id in self._assignments:
            self._refused.add(worker_id)

    def _took(self, worker_id: str, now: float) -> Batch[A]:
        """The report of ``worker_id`` is in the open batch: its assignment waits for the
        checkpoint. Returns that batch."""
        mine = self._assignments[worker_id]
        if mine.state == _RELEASED:
            self._holding += 1
        mine.state = _PENDING
        batch = self.batch
        batch.workers.append(worker_id)
        batch.reported_at.append(now)
        latency = max(0.0, now - mine.assigned_at)
        self._latencies.append(latency)
        self._slowest = max(self._slowest, latency)
        return batch

    @property
    def reported(self) -> int:
        """Reports in the round, durable or waiting for their checkpoint."""
        sealed = self.sealed.count if self.sealed is not None else 0
        elsewhere = self.elsewhere.count if self.elsewhere is not None else 0
        return self.committed.count + sealed + self.batch.count + elsewhere

    @property
    def current(self) -> A:
        """A copy of the aggregate over every report so far, durable or not (for tests and
        figures; the round's own bookkeeping never needs it)."""
        out = self.committed.copy()
        if self.sealed is not None:
            out.merge(self.sealed.aggregate)
        out.merge(self.batch.aggregate)
        return out

    @property
    def complete(self) -> bool:
        """The goal is reached (never under Poisson participation: there the goal is the
        expected count, and the round closes at its deadline)."""
        return not self.poisson and self.reported >= self.plan.goal

    def reporters(self) -> list[str]:
        """Workers whose report is durable in this round."""
        return [a.worker_id for a in self._assignments.values() if a.state == _REPORTED]

    def due(self, now: float) -> bool:
        return now >= self.deadline

    # -- checkpoints -----------------------------------------------------------------------------

    def seal(self, *, force: bool = False) -> tuple[Batch[A], bytes] | None:
        """Seal the open batch for a checkpoint if it holds ``step`` reports (any, with
        ``force``) and no other checkpoint is being written; return it with the byte form of
        the aggregate the checkpoint will hold."""
        batch = self.batch
        # The first checkpoint also needs the round's minimum: an acknowledged report is then
        # in a round that will complete, never in one abandoned at its deadline.
        need = self.step if self.committed.count else max(self.step, self.plan.minimum)
        if self.sealed is not None or batch.count == 0 or (batch.count < need and not force):
            return None
        merged = self.committed.copy()
        merged.merge(batch.aggregate)
        self.sealed, self.batch = batch, self._new_batch()
        return batch, merged.to_bytes()

    def checkpointed(self, batch: Batch[A]) -> None:
        """The sealed batch is stored: its reports are now the round's for good."""
        assert batch is self.sealed
        self.committed.merge(batch.aggregate)
        for worker in batch.workers:
            self._assignments[worker].state = _REPORTED
        self.sealed = None

    def dropped_batch(self, batch: Batch[A]) -> None:
        """A batch could not be stored: forget its reports; their workers may send them again."""
        if batch is self.sealed:
            self.sealed = None
        elif batch is self.batch:
            self.batch = self._new_batch()
        self._forget(batch)

    def _forget(self, batch: Batch[A]) -> None:
        for worker in batch.workers:
            mine = self._assignments[worker]
            if mine.state == _PENDING:
                mine.state = _ACTIVE

    # -- closing ---------------------------------------------------------------------------------

    def take_elsewhere(self, parts: list[bytes]) -> None:
        """A cluster leader's close: the other shards' checkpointed sums (each over at least k
        reports), kept apart from this shard's own — its own checkpoints go on holding only its
        own reports — and merged into the result by :meth:`close`. Replaces what an earlier
        call took. Raises ValueError for a sum that does not fit the round."""
        out = self._empty()
        for data in parts:
            out.merge(self._restore(data))
        self.elsewhere = out

    def close(self) -> Batch[A]:
        """Stop taking reports; return the batch that the round's commit makes durable. The
        lifecycle waits for a sealed batch's checkpoint before it closes."""
        assert self.sealed is None
        self.open = False
        batch = self.batch
        final = self.committed.copy()
        final.merge(batch.aggregate)
        if self.elsewhere is not None:
            final.merge(self.elsewhere)
        self.final = final
        return batch

    def reopen(self, batch: Batch[A]) -> None:
        """The round's commit failed: take reports again, without the closing batch's."""
        self.open = True
        self.final = None
        self.batch = self._new_batch()
        self._forget(batch)

    @property
    def abandoned(self) -> bool:
        """Closed below its minimum: nothing computed from its reports is released."""
        final = self.final
        assert final is not None, "close() first"
        return final.count < max(1, self.plan.minimum)

    @property
    def dropped(self) -> int:
        return self.assigned - self.reported

    def unreported(self, *, completed: bool) -> dict[str, int]:
        """After :meth:`close`: the assignments without a report in the round's result, by
        what became of them — ``left``: released because the worker went away (its connection
        closed, or it opted out); ``unfinished``: still out when the round closed (training,
        over-selected or slow, or released for staying silent past the report timeout): a
        report that comes later is refused as ``stale_round``; ``rejected``: the worker's report
        was refused (by the round's checks, or — ``completed`` false — because the round closed
        below its minimum and its last batch does not count). They sum to ``assigned`` minus
        the reports in the result. One pass over the assignments, at close."""
        left = unfinished = rejected = 0
        refused, silent = self._refused, self._silent
        for a in self._assignments.values():
            state = a.state
            if state == _REPORTED or (state == _PENDING and completed):
                continue
            if state == _PENDING or a.worker_id in refused:
                rejected += 1
            elif state == _RELEASED and a.worker_id not in silent:
                left += 1
            else:
                unfinished += 1
        return {"left": left, "unfinished": unfinished, "rejected": rejected}

    # -- telling operators -----------------------------------------------------------------------

    def waiting(self, now: float, k: int, *, cluster_reports: int | None = None) -> str:
        """Why the round is still open, in words: counts below ``k`` read "<k".
        ``cluster_reports``: the round's durable reports across a cluster's shards (the
        assignments still training, and those waiting for a checkpoint, are then this
        shard's own)."""
        training = sum(1 for a in self._assignments.values() if a.state == _ACTIVE)
        goal = self.plan.goal
        left = max(0.0, self.deadline - now)
        here = "" if cluster_reports is None else " here"
        reported = self.reported if cluster_reports is None else cluster_reports
        parts = [
            f"{_count(reported, k)}/{goal} reports"
            + ("" if cluster_reports is None else " across the cluster"),
            f"{_count(training, k)} assigned still training{here}",
        ]
        waiting_ack = self.batch.count + (self.sealed.count if self.sealed else 0)
        if waiting_ack:
            parts.append(f"{_count(waiting_ack, k)} waiting for their checkpoint{here}")
        if self.poisson:
            # No slots: each worker's coin decides, and the round runs to its deadline.
            parts[0] = f"{_count(reported, k)} reports (about {goal} expected)"
            parts.append(f"Poisson participation: closes at its deadline, in {_duration(left)}")
            return ", ".join(parts)
        if cluster_reports is None and self.needed and training + self.reported < goal:
            parts.append(f"{_count(self.needed, k)} slots free for new workers")
        parts.append(f"deadline in {_duration(left)}")
        return ", ".join(parts)


class RoundState(RoundBase[Aggregate]):
    """A training round: clipped updates summed into an ``Aggregate``, then the update the
    server optimizer applies. ``clip_norm`` is the round's L2 bound; ``release`` is a DP round's
    private output once it closes."""

    kind = "train"

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
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(
            config,
            number,
            model_version,
            model_frame,
            opened_at,
            secret=secret,
            step=step,
            plan=config.rounds,
        )
        self.clip_norm = clip_norm if clip_norm is not None else config.clip_norm
        self.release: Release | None = None

    def _empty(self) -> Aggregate:
        return Aggregate(self.config.model.param_count)

    def _restore(self, data: bytes) -> Aggregate:
        restored = Aggregate.from_bytes(data)
        if restored.d != self.committed.d:
            raise ValueError(
                f"checkpoint of round {self.number} holds {restored.d} values, "
                f"not {self.committed.d}"
            )
        return restored

    @property
    def poisson(self) -> bool:
        privacy = self.config.privacy
        return privacy is not None and privacy.poisson

    def add(
        self, worker_id: str, update: Update, frame: TensorFrame, now: float
    ) -> Batch[Aggregate]:
        """Decode, check, clip and add one report to the open batch; return that batch.
        Raises UpdateRejected (reason attached) before anything changes."""
        head = frame.header
        config = self.config
        expected = config.model.param_count
        if head.shape != (expected,) or head.dtype != config.update_dtype:
            raise UpdateRejected(
                "wrong_shape",
                f"expected {config.update_dtype} of shape [{expected}], got "
                f"{head.dtype} of shape {list(head.shape)}",
            )
        values = decode_update(frame.payload, head.dtype, expected)
        server = config.server
        weight = update_weight(update.num_examples, server.weighting, server.max_examples or None)
        metrics = update.metrics
        loss, accuracy = _finite(metrics.get("loss")), _finite(metrics.get("accuracy"))
        batch = self.batch
        aggregate = batch.aggregate
        result = aggregate.add(values, Contribution(weight, 0, loss, accuracy), self.clip_norm)
        # The server's view of the unclipped bit needs the norm, known only now.
        aggregate.unclipped_bits += observed_bit(result.norm, self.clip_norm, update.unclipped)
        return self._took(worker_id, now)

    def reopen(self, batch: Batch[Aggregate]) -> None:
        super().reopen(batch)
        self.release = None

    def result(
        self, rng: np.random.Generator | None, tree: tuple[TreeNoise, int, int] | None = None
    ) -> np.ndarray | None:
        """The update the server optimizer applies, or None when the round is abandoned (below
        its minimum). With a privacy config it is the private release, kept as ``release``:
        DP-FedAvg's (``rng`` the noise source), or under DP-FTRL the step of the noisy prefix
        sum (``tree``: the task's tree noise and this round's tree and step)."""
        final = self.final
        assert final is not None, "close() first"
        if self.abandoned:
            return None
        privacy = self.config.privacy
        if privacy is None:
            return final.mean()
        if privacy.ftrl:
            assert tree is not None, "a DP-FTRL round needs its tree noise and position"
            noise, index, step = tree
            self.release = ftrl_release(privacy, final.sum, self.clip_norm, noise, index, step)
            return self.release.mean
        assert rng is not None, "a private round needs its noise generator"
        self.release = PrivateAggregate(final, privacy, self.clip_norm).release(rng)
        return self.release.mean if self.release is not None else None

    def metrics(self) -> dict[str, float]:
        """What the round record keeps. Under DP only released figures: the workers' own
        metrics (loss, accuracy, norms, clip counts) are not noised and are not kept."""
        final = self.final if self.final is not None else self.committed
        if self.config.privacy is None:
            return final.metrics()
        if self.release is None:
            return {}
        out = self.release.metrics()
        if self.epsilon_after is not None:
            out["epsilon"] = self.epsilon_after
        return out


def _count(n: int, k: int) -> str:
    return str(n) if n >= k else f"<{k}"  # zero too: it is below k (docs/monitoring.md)


def _duration(seconds: float) -> str:
    if seconds >= 90:
        return f"{round(seconds / 60)} min"
    return f"{math.ceil(seconds)} s"


def _finite(value: object) -> float | None:
    """A reported metric as a float, or None when it is absent, not a number or not finite
    (the contract bounds it; this keeps a sum finite whatever arrives)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None
