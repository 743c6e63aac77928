"""Round coordination: what a coordinator's rounds share with other processes, if any.

Rules of this file: it names the seam, and holds the one-process strategy. The lifecycle and
the coordinator call a :class:`RoundCoordination` at the few points where a cluster's shards
differ from one process — who opens and closes a round, where a checkpoint goes, what counts
as the round's goal, what happens once a model version is committed — and nowhere else.
:class:`LocalRounds` (the default) is one process on its own state: every call is what the
lifecycle did before the seam existed. ``dandelion.cluster.shards`` holds the cluster's
strategy; this package never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..protocol import ComeBack
from ..storage import RoundCheckpoint, StateStore

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .runtime import Round, TaskRuntime
    from .taskconfig import TaskConfig

__all__ = ["LocalRounds", "RoundCoordination", "cluster_refusal"]


def cluster_refusal(config: TaskConfig) -> str | None:
    """Why a cluster's shards do not run the task ``config`` describes; None when they do.

    DP-FTRL's minimum separation between one worker's participations is kept per process, so
    its guarantee would not hold across shards. A secure round's cohort runs one SecAgg+
    server that every participant's phases go through, and a cluster spreads the participants
    over shards that each hold only their own connections."""
    if config.privacy is not None and config.privacy.ftrl:
        return (
            "DP-FTRL's minimum separation is kept per process; a cluster does not run it "
            "(serve it from one coordinator)"
        )
    if config.secure_aggregation is not None:
        return (
            "a secure round's participants talk to one SecAgg+ server, and a cluster spreads "
            "them over shards; a cluster does not run it (serve it from one coordinator)"
        )
    return None


class RoundCoordination:
    """The strategy a coordinator's rounds follow; this base is one process on its own."""

    def attach(self, coordinator: Coordinator) -> None:
        """Called once, before the coordinator starts."""

    def describe(self) -> dict[str, object] | None:
        """What ``/healthz`` says of this process's place among others (None: on its own)."""
        return None

    def reports(self, task: str, rnd: Round) -> int | None:
        """The durable report count of ``rnd`` across every process serving it, as last seen;
        None: this process's own count is the round's."""
        return None

    async def view(self) -> dict[str, object] | None:
        """What the operators' figures say of the processes serving the population beside
        this one (None: on its own)."""
        return None

    async def start(self) -> None:
        """Called once the coordinator has loaded its tasks."""

    async def close(self) -> None:
        """Called when the coordinator stops."""

    async def tick(self, now: float) -> None:
        """At every tick of the coordinator, before its rounds are looked at."""

    async def open(self, runtime: TaskRuntime, now: float) -> None:
        """The task wants its next round (``runtime.wants_round``): open it."""
        raise NotImplementedError

    async def resume(self, runtime: TaskRuntime) -> None:
        """A task just loaded from storage: take up the round it has open, if any."""
        raise NotImplementedError

    def may_close(self, runtime: TaskRuntime, rnd: Round, now: float) -> bool:
        """Whether this process closes ``rnd`` now: its goal is reached, or its deadline."""
        return self.complete(runtime, rnd) or rnd.due(now)

    def complete(self, runtime: TaskRuntime, rnd: Round) -> bool:
        """Whether the round's goal is reached, for the process that closes it."""
        return rnd.complete

    def ends_by(self, rnd: Round) -> float | None:
        """When a worker that reported in ``rnd`` may find its next round: at once when the
        round reached its goal, else not before its deadline."""
        return None if rnd.complete else rnd.deadline

    def come_back(self, answer: ComeBack, now: float) -> ComeBack:
        """The ``come_back`` a checking-in worker is sent (selection's, as it stands)."""
        return answer

    def fence(self, store: StateStore, task: str) -> None:
        """Inside the transaction that opens or commits a round of ``task``."""

    def checkpoint(
        self, store: StateStore, runtime: TaskRuntime, rnd: Round, checkpoint: RoundCheckpoint
    ) -> None:
        """Inside the transaction of a checkpoint: store the round's aggregate so far."""
        store.save_round_checkpoint(checkpoint)

    def checkpointed(self, runtime: TaskRuntime, rnd: Round, count: int) -> None:
        """``count`` more reports of ``rnd`` are durable (a checkpoint was committed)."""

    async def claim(self, runtime: TaskRuntime, rnd: Round, nonce: str) -> bool:
        """Before a report is added: False if its assignment reported already (elsewhere)."""
        return True

    def unclaim(self, runtime: TaskRuntime, rnd: Round, nonces: Iterable[str]) -> None:
        """Reports claimed but not stored (refused, or their checkpoint failed)."""

    async def take_slot(self, runtime: TaskRuntime, rnd: Round) -> bool:
        """Before a fresh assignment is handed out: False when the round has no slot left."""
        return True

    def released(self, task: str, number: int) -> None:
        """An assignment of round ``number`` of ``task`` was released without a report."""

    async def before_commit(self, runtime: TaskRuntime, rnd: Round) -> bool:
        """Before the round's result is computed and committed; False: not now (it stays
        open)."""
        return True

    def committed(self, runtime: TaskRuntime, rnd: Round) -> None:
        """The round closed and its result (a model version, when it trained) is committed."""


class LocalRounds(RoundCoordination):
    """One process, one state: it opens and closes every round itself."""

    def attach(self, coordinator: Coordinator) -> None:
        self.lifecycle = coordinator.lifecycle

    async def open(self, runtime: TaskRuntime, now: float) -> None:
        await self.lifecycle.open(runtime, now)

    async def resume(self, runtime: TaskRuntime) -> None:
        await self.lifecycle.resume(runtime)
