"""A secure round: a training round whose updates arrive only as SecAgg+ masked vectors
(docs/secure_aggregation.md, In the live coordinator).

Rules of this file: what a round under ``[secure_aggregation]`` is, sans I/O, like
``rounds.py``: it never awaits, never reads the clock, never stores anything. It is a
:class:`~dandelion.coordinator.rounds.RoundState` whose cohort is fixed when its protocol
starts: workers are assigned as in any round until ``ceil(goal * over_selection)`` hold an
assignment (or the round's deadline passes with at least :attr:`SecureRound.smallest`); then
the participants are numbered 1 … n and the round's
:class:`~dandelion.protocol.secagg.server.SecAggServer` runs the phases. The coordinator holds
the masked sum only (:class:`~dandelion.aggregation.SecureAggregate`), never a plaintext update
of anyone, nor a figure of one (no norm, loss or clip bit). The round ends when the server
does: ``done`` — the unmasked sum of the survivors, noised once under ``[privacy]``, is the
round's result and the survivors are its reporters — or ``abandoned``, and the round commits as
abandoned (nothing revealed). There are no checkpoints: a secure round that a crash
interrupts is closed as interrupted at restart (:meth:`SecureRound.resume` refuses), and no
acknowledged update is lost with it, since acks are sent only once the model holding the sum
is committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..aggregation import SecureAggregate
from ..aggregation.errors import UpdateRejected
from ..privacy.ftrl import TreeNoise
from ..privacy.mechanism import ftrl_release, release
from ..protocol import TensorFrame, Update
from ..protocol.secagg import CryptoHost, Mod32Ops, SecAggConfigError
from ..protocol.secagg.server import Phase, SecAggServer
from ..protocol.secagg.unmasking import Offload, in_place
from .rounds import Batch, RoundState

if TYPE_CHECKING:
    from ..aggregation import Aggregate
    from .secure_config import SecureAggregationPlan
    from .taskconfig import TaskConfig

__all__ = ["SecureRound"]

_PENDING, _RELEASED = "pending", "released"  # rounds.py's assignment states


class SecureRound(RoundState):
    """A training round summed by SecAgg+: a fixed cohort, then the protocol's phases."""

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
            clip_norm=clip_norm,
        )
        assert config.secure_aggregation is not None
        self.secure_plan: SecureAggregationPlan = config.secure_aggregation
        self.server: SecAggServer | None = None
        self.sink: SecureAggregate | None = None
        self.by_index: dict[int, str] = {}  # participant index -> worker id
        self.index_of: dict[str, int] = {}
        self.survivors: list[str] = []  # whose masked vector is in the sum (after done)
        self.failure: str | None = None  # why the round ended without a sum
        self.ended = False  # the protocol ended and finish() took its outcome
        #: Assigned workers whose task is queued on their connection: only they may be in the
        #: cohort (a setup must never overtake the task it belongs to).
        self.told: set[str] = set()
        self.gone: set[str] = set()  # participants whose connection of the round ended
        self.told_to_stop: set[str] = set()  # participants pushed a secagg_abort

    # -- the cohort ------------------------------------------------------------------------------

    @property
    def smallest(self) -> int:
        """The fewest participants the protocol may start with."""
        plan, fixed = self.secure_plan, self.secure_plan.degree
        return max(2, self.plan.minimum, plan.min_survivors or 0, (fixed or 0) + 1)

    @property
    def started(self) -> bool:
        return self.server is not None

    @property
    def needed(self) -> int:
        return 0 if self.started or self.failure is not None else super().needed

    def cohort(self) -> list[str]:
        """The workers holding an assignment that has not lapsed, in the order assigned."""
        told = self.told
        return [
            a.worker_id
            for a in self._assignments.values()
            if a.state == "active" and a.worker_id in told
        ]

    def ready(self, now: float) -> bool:
        """Whether the cohort is closed now: full, or the deadline passed with enough."""
        if self.started or self.failure is not None or not self.open:
            return False
        held = len(self.cohort())
        full = not self.poisson and held >= self.plan.max_assigned
        return full or (now >= self.deadline and held >= self.smallest)

    def short(self, now: float) -> bool:
        """Whether the deadline passed with too few for the protocol to start."""
        if self.started or self.failure is not None or not self.open:
            return False
        return now >= self.deadline and len(self.cohort()) < self.smallest

    def start(
        self,
        now: float,
        crypto: CryptoHost,
        ops: Mod32Ops,
        seed: bytes | None = None,
        offload: Offload = in_place,
    ) -> SecAggServer | None:
        """Number the cohort 1 … n and build the round's server (its ``secagg_setup`` messages
        are in its outbox; ``offload`` runs its unmasking's arithmetic). None, with
        :attr:`failure` set, when the parameters do not hold at this n."""
        cohort = self.cohort()
        d = self.config.model.param_count
        try:
            params = self.secure_plan.params(len(cohort), d, self.clip_norm)
        except SecAggConfigError as exc:
            self.failure = f"parameters: {exc}"
            return None
        self.sink = SecureAggregate(d, params.scale_bits)
        for index, worker in enumerate(cohort, start=1):
            self.by_index[index] = worker
            self.index_of[worker] = index
            # In the protocol now: not freed when its connection ends (that is a dropout), and
            # a check-in is asked to come back after the round.
            self._assignments[worker].state = _PENDING
        self.server = SecAggServer(
            params,
            self.config.name,
            self.number,
            crypto,
            now,
            ops=ops,
            seed=seed,
            sink=self.sink,
            offload=offload,
        )
        return self.server

    def fail(self, reason: str) -> None:
        self.failure = reason

    # -- the end ---------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The protocol ended (``done`` or ``abandoned``), or never could start."""
        return self.failure is not None or (self.server is not None and self.server.finished)

    def due(self, now: float) -> bool:
        # The round's deadline closes the cohort (``ready``/``short``); the phases have their
        # own timeouts: the round ends when the protocol does, never at a clock of its own.
        return False

    def finish(self, now: float) -> None:
        """The server ended: the survivors (done) are the round's reporters, in the batch the
        commit makes durable; every other participant is released (it left, or the round
        was abandoned)."""
        server = self.server
        assert server is not None
        assert server.finished
        self.ended = True
        done = server.phase is Phase.DONE
        u3 = server.live[3] if done else set()
        self.survivors = [self.by_index[i] for i in sorted(u3)]
        if not done:
            self.failure = server.abandon_reason or "abandoned"
        for worker, index in self.index_of.items():
            if index not in u3:
                self._assignments[worker].state = _RELEASED
        self.batch.workers = list(self.survivors)
        self.batch.reported_at = [now] * len(self.survivors)  # when the sum was known

    @property
    def reported(self) -> int:
        return len(self.survivors)

    @property
    def abandoned(self) -> bool:
        sink = self.sink
        unmasked = sink is not None and sink.unmasked
        return not unmasked or len(self.survivors) < max(1, self.plan.minimum)

    def add(
        self, worker_id: str, update: Update, frame: TensorFrame, now: float
    ) -> Batch[Aggregate]:
        """A secure round never takes a plaintext update. Raises UpdateRejected."""
        raise UpdateRejected("wrong_shape", "a secure round takes masked vectors only")

    def resume(self, aggregate: bytes | None, selected: set[str], reported: set[str]) -> None:
        """A secure round is not resumed (its secrets and masked sum were in memory only).
        Raises ValueError: the round is closed as interrupted, and none of it was acked."""
        raise ValueError("a secure round is not resumed after a restart; it is interrupted")

    def reopen(self, batch: Batch[Aggregate]) -> None:
        """The commit failed: the same survivors are committed at the next attempt."""
        self.open = True
        self.final = None
        self.release = None
        self.batch = batch

    def result(
        self, rng: np.random.Generator | None, tree: tuple[TreeNoise, int, int] | None = None
    ) -> np.ndarray | None:
        """The mean update of the survivors, or its private release under ``[privacy]``: the
        noise is added once, to the unmasked sum (central DP). None when abandoned."""
        if self.abandoned:
            return None
        sink = self.sink
        assert sink is not None
        privacy = self.config.privacy
        if privacy is None:
            return sink.mean()
        total = np.asarray(sink.sum, dtype=np.float32)
        if privacy.ftrl:
            assert tree is not None, "a DP-FTRL round needs its tree noise and position"
            noise, index, step = tree
            self.release = ftrl_release(privacy, total, self.clip_norm, noise, index, step)
        else:
            assert rng is not None, "a private round needs its noise generator"
            self.release = release(privacy, total, 0, sink.count, self.clip_norm, rng)
        return self.release.mean

    def metrics(self) -> dict[str, float]:
        """Figures of the sum only: nothing of one update is known (under privacy, the
        released figures, as for any private round)."""
        if self.config.privacy is not None:
            return super().metrics()
        return {}

    def waiting(self, now: float, k: int, *, cluster_reports: int | None = None) -> str:
        """Why the round is still open, in words (counts below ``k`` read "<k"). A cluster
        does not run secure rounds: ``cluster_reports`` is never given."""
        server = self.server
        if server is None:
            held = len(self.cohort())
            shown = str(held) if held >= k else f"<{k}"
            left = max(0.0, self.deadline - now)
            return (
                f"secure round: cohort {shown}/{self.plan.max_assigned} assigned, closes in "
                f"{left:.0f} s"
            )
        return f"secure round: phase {server.phase.value} of {server.params.n} participants"
