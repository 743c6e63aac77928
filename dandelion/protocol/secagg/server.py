"""The coordinator's side of a secure round, sans I/O (docs/secure_aggregation.md, The phases).

Rules of this file: the server takes whole worker messages in (with the index the caller knows
the sender by) and queues the messages to send in :attr:`SecAggServer.outbox`; it never reads a
clock (``now`` is passed in; :meth:`SecAggServer.tick` closes a phase whose deadline passed),
never touches a socket, and awaits only the injected crypto host and, once, the injected
:data:`~dandelion.protocol.secagg.unmasking.Offload` that runs the unmasking's arithmetic (in a
worker thread in the coordinator). While that runs the server is *unmasking*: the unmask phase
is closed, it owns no state the unmasking reads (the work holds copies), and it changes nothing
— a message for the round is refused as after any phase's close, a dropout is only noted, a
tick does nothing. The phases follow one another in the one table ``_NEXT``. It holds no
participant's vector: each masked vector is added to one running sum as it arrives. Before it
asks anyone for a share it checks that the round can finish; when it cannot, the round is
abandoned and nothing is revealed.

A worker message that breaks the protocol raises
:class:`~dandelion.protocol.secagg.errors.SecAggViolation` (or ``MessageError`` /
``FrameError`` for a masked frame that does not hold up) with the reason; when the sender was
expected to answer in this phase it is dropped from the round, which goes on without it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import FrameError
from ..frames import decode_frame
from .crypto import CryptoHost
from .errors import CryptoError, ReconstructionError, SecAggViolation
from .fixedpoint import decode_sum
from .graph import SEED_BYTES, neighbourhoods, round_salt
from .messages import (
    Abort,
    Advertise,
    EncryptedShare,
    MaskedInput,
    NeighbourKeys,
    NeighbourKeysMessage,
    Relay,
    Reveal,
    SecAggMessage,
    Setup,
    Shares,
    Unmask,
)
from .params import SecAggParams
from .sums import MaskedSum, RunningMaskedSum
from .unmasking import Offload, Unmasking, in_place
from .vectors import Mod32Ops, StdlibMod32

__all__ = ["Phase", "SecAggServer"]


class Phase(enum.Enum):
    ADVERTISE = "advertise"  # waiting for secagg_advertise from U0
    SHARE = "share"  # waiting for secagg_shares from U1
    MASKED = "masked"  # waiting for secagg_masked + frame from U2
    UNMASK = "unmask"  # waiting for secagg_reveal from U3
    DONE = "done"  # the sum of U3 is known
    ABANDONED = "abandoned"  # nothing revealed; see abandon_reason


_P = Phase
#: What each open phase waits for, and the phase that follows its close.
_NEXT: dict[Phase, tuple[str, Phase]] = {
    _P.ADVERTISE: ("secagg_advertise", _P.SHARE),
    _P.SHARE: ("secagg_shares", _P.MASKED),
    _P.MASKED: ("secagg_masked", _P.UNMASK),
    _P.UNMASK: ("secagg_reveal", _P.DONE),
}
_TIMEOUT = {
    _P.ADVERTISE: "advertise_s",
    _P.SHARE: "share_s",
    _P.MASKED: "masked_s",
    _P.UNMASK: "unmask_s",
}


@dataclass(slots=True)
class _Participant:
    index: int
    nonce: str
    neighbours: frozenset[int]
    c_pk: bytes = b""
    s_pk: bytes = b""
    told: frozenset[int] = frozenset()  # whose keys it got (phase 2)
    masked_with: frozenset[int] = frozenset()  # whose ciphertexts it got (phase 3)
    asked_s: frozenset[int] = frozenset()  # whose s-key shares it was asked for (phase 4)
    asked_b: frozenset[int] = frozenset()  # whose seed shares it was asked for (phase 4)
    outgoing: dict[int, bytes] = field(default_factory=dict)  # its ciphertexts, by receiver


class SecAggServer:
    """One secure round of n participants, numbered 1 … n."""

    def __init__(
        self,
        params: SecAggParams,
        task: str,
        round_number: int,
        crypto: CryptoHost,
        now: float,
        *,
        ops: Mod32Ops | None = None,
        seed: bytes | None = None,
        sink: MaskedSum | None = None,
        offload: Offload = in_place,
    ) -> None:
        self.params = params
        self._offload = offload
        self._unmasking = False  # the unmask phase closed; the masks' total is being computed
        self.task = task
        self.round = round_number
        self.crypto = crypto
        self.ops = ops or StdlibMod32()
        self.seed = seed if seed is not None else crypto.random_bytes(SEED_BYTES)
        self._salt = round_salt(task, round_number, self.seed)
        graph = neighbourhoods(params.n, params.degree, self._salt)
        self._people = {i: _Participant(i, crypto.random_bytes(12).hex(), graph[i]) for i in graph}
        self.phase = _P.ADVERTISE
        self.deadline = now + params.timeouts.advertise_s
        #: The live set of each phase: live[0] = U0, … live[4] = U4.
        self.live: list[set[int]] = [set(self._people)]
        self._answered: set[int] = set()  # answered the open phase
        self._waiting: set[int] = set(self._people)  # not yet answered nor failed in it
        self._aborted: set[int] = set()  # told to abort
        self._gone: set[int] = set()  # known to the caller to be gone (connection closed)
        #: Where the masked vectors go; the server itself holds none.
        self.sink = sink if sink is not None else RunningMaskedSum(params.dimension, self.ops)
        self._s_shares: dict[int, dict[int, bytes]] = {}  # dropped i -> {holder: share}
        self._b_shares: dict[int, dict[int, bytes]] = {}  # survivor i -> {holder: share}
        self.outbox: list[tuple[int, SecAggMessage]] = [
            (i, self._setup(p)) for i, p in self._people.items()
        ]
        self.abandon_reason: str | None = None
        self.result: bytes | None = None

    # -- what the caller sees -----------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase in (_P.DONE, _P.ABANDONED)

    @property
    def unmasking(self) -> bool:
        """The unmask phase closed and the masks' total is being computed (off the caller's
        hands, see :data:`~dandelion.protocol.secagg.unmasking.Offload`)."""
        return self._unmasking

    def take_outbox(self) -> list[tuple[int, SecAggMessage]]:
        """The queued (index, message) pairs, oldest first; the queue is emptied."""
        out, self.outbox = self.outbox, []
        return out

    def decoded_sum(self) -> list[float]:
        """The sum of the survivors' updates, decoded. Raises LookupError before DONE."""
        if self.result is None:
            raise LookupError(f"no sum: the round is {self.phase.value}")
        return decode_sum(self.result, self.params.scale_bits)

    def expected(self) -> set[int]:
        """Who the open phase still waits for."""
        if self.finished:
            return set()
        return set(self._waiting)

    # -- input --------------------------------------------------------------------------------

    async def receive(
        self, index: int, msg: SecAggMessage, now: float, frame: bytes | None = None
    ) -> None:
        """Take one message from participant ``index`` (``frame``: the masked frame that
        follows ``secagg_masked``). Raises SecAggViolation, FrameError."""
        if self.finished:
            raise SecAggViolation(f"the round is {self.phase.value}", ref_type=msg.TYPE)
        if self._unmasking:
            raise SecAggViolation(
                "the unmask phase is closed: the sum is being unmasked", ref_type=msg.TYPE
            )
        await self.tick(now)
        if self.finished or index not in self._waiting or _NEXT[self.phase][0] != msg.TYPE:
            raise SecAggViolation(
                f"{msg.TYPE} from {index} is not expected in phase {self.phase.value}",
                ref_type=msg.TYPE,
            )
        try:
            if (msg.task, msg.round) != (self.task, self.round):
                raise SecAggViolation(
                    f"a message of {msg.task} round {msg.round}, not {self.task} round "
                    f"{self.round}",
                    ref_type=msg.TYPE,
                )
            self._take(self._people[index], msg, frame)
        except (SecAggViolation, FrameError):
            self._drop(index)
            if not self._waiting:  # the last one the phase waited for broke it
                await self._close(now)
            raise
        self._answered.add(index)
        self._waiting.discard(index)
        if not self._waiting:
            await self._close(now)

    async def drop(self, index: int, now: float) -> None:
        """The caller knows participant ``index`` is gone (its connection closed): the open
        phase and every later one stop waiting for it, so a phase closes as soon as everyone
        still there has answered."""
        if self.finished or index not in self._people or index in self._gone:
            return
        self._gone.add(index)
        if self._unmasking:
            return  # the unmask phase is closed: nobody is waited for
        if index in self._waiting:
            self._waiting.discard(index)
            if not self._waiting:
                await self._close(now)

    async def tick(self, now: float) -> None:
        """Close the open phase if its deadline has passed (nothing while unmasking)."""
        while not self.finished and not self._unmasking and now >= self.deadline:
            await self._close(now)

    # -- one message --------------------------------------------------------------------------

    def _take(self, p: _Participant, msg: SecAggMessage, frame: bytes | None) -> None:
        if frame is not None and not isinstance(msg, MaskedInput):
            raise SecAggViolation(f"a frame follows secagg_masked only, not {msg.TYPE}")
        if isinstance(msg, Advertise):
            p.c_pk, p.s_pk = msg.c_pk, msg.s_pk
        elif isinstance(msg, Shares):
            receivers = {s.peer for s in msg.shares}
            if receivers != p.told:
                raise SecAggViolation(
                    f"shares for {sorted(receivers)}, but the keys sent were of {sorted(p.told)}",
                    ref_type=msg.TYPE,
                )
            p.outgoing = {s.peer: s.ciphertext for s in msg.shares}
        elif isinstance(msg, MaskedInput):
            self._take_masked(p, msg, frame)
        elif isinstance(msg, Reveal):
            if set(msg.s_shares) != p.asked_s or set(msg.b_shares) != p.asked_b:
                raise SecAggViolation(
                    "a reveal must hold exactly the shares asked for: s-key shares of "
                    f"{sorted(p.asked_s)}, seed shares of {sorted(p.asked_b)}",
                    ref_type=msg.TYPE,
                )
            for j, share in msg.s_shares.items():
                self._s_shares.setdefault(j, {})[p.index] = share
            for j, share in msg.b_shares.items():
                self._b_shares.setdefault(j, {})[p.index] = share

    def _take_masked(self, p: _Participant, msg: MaskedInput, frame: bytes | None) -> None:
        if frame is None:
            raise SecAggViolation("secagg_masked without its masked frame", ref_type=msg.TYPE)
        tensor = decode_frame(frame)
        head = tensor.header
        if (head.type, head.task, head.round, head.nonce, msg.nonce) != (
            "masked",
            self.task,
            self.round,
            p.nonce,
            p.nonce,
        ):
            raise SecAggViolation(
                "the masked frame and message must carry type masked, the round's task and "
                "number, and the participant's nonce",
                ref_type=msg.TYPE,
            )
        d = self.params.dimension
        if head.shape != (d,):
            raise SecAggViolation(f"a masked vector has shape [{d}]", ref_type=msg.TYPE)
        self.sink.add_masked(tensor.payload)

    # -- closing a phase ----------------------------------------------------------------------

    async def _close(self, now: float) -> None:
        phase = self.phase
        self.live.append(self._answered & self.live[-1])
        self._answered = set()
        self._waiting = set()  # closed: an answer arriving from now on is late
        if phase is _P.ADVERTISE:
            self._close_advertise()
        elif phase is _P.SHARE:
            self._close_share()
        elif phase is _P.MASKED:
            self._close_masked()
        elif phase is _P.UNMASK:
            await self._close_unmask()
        if not self.finished:
            self.phase = _NEXT[phase][1]
            self.deadline = now + getattr(self.params.timeouts, _TIMEOUT[self.phase])
            self._waiting = set(self.live[-1]) - self._gone
            if not self._waiting:  # everyone left of this phase is gone already
                await self._close(now)

    def _prune(self) -> bool:
        """Drop from the newest live set, until none is left, everyone with fewer than t
        neighbours in it (told to abort); abandon the round below min_survivors. True when
        the round goes on."""
        live, t = self.live[-1], self.params.threshold
        while True:
            weak = {i for i in live if len(self._people[i].neighbours & live) < t}
            if not weak:
                break
            live -= weak
            for i in sorted(weak):
                self._tell_abort(i, "too_few_neighbours")
        if len(live) < self.params.min_survivors:
            self._abandon("too_few_survivors")
            return False
        return True

    def _close_advertise(self) -> None:
        if not self._prune():
            return
        live = self.live[-1]
        for i in sorted(live):
            p = self._people[i]
            p.told = frozenset(p.neighbours & live)
            keys = tuple(
                NeighbourKeys(j, self._people[j].c_pk, self._people[j].s_pk) for j in sorted(p.told)
            )
            self.outbox.append((i, NeighbourKeysMessage(self.task, self.round, keys)))

    def _close_share(self) -> None:
        if not self._prune():
            return
        live = self.live[-1]
        for i in sorted(live):
            p = self._people[i]
            p.masked_with = frozenset(p.neighbours & live)
            relayed = tuple(
                EncryptedShare(j, self._people[j].outgoing[i]) for j in sorted(p.masked_with)
            )
            self.outbox.append((i, Relay(self.task, self.round, relayed)))
        for p in self._people.values():
            p.outgoing = {}  # relayed or never to be: the coordinator keeps no ciphertext

    def _close_masked(self) -> None:
        u2, u3, t = self.live[-2], self.live[-1], self.params.threshold
        dropped = u2 - u3
        short = [i for i in sorted(u2) if len(self._people[i].masked_with & u3) < t]
        if len(u3) < self.params.min_survivors or short:
            self._abandon("too_few_survivors")  # before anyone is asked for a share
            return
        for i in sorted(u3):
            p = self._people[i]
            p.asked_s = frozenset(p.masked_with & dropped)
            p.asked_b = frozenset(p.masked_with & u3)
            self.outbox.append(
                (
                    i,
                    Unmask(
                        self.task, self.round, tuple(sorted(p.asked_s)), tuple(sorted(p.asked_b))
                    ),
                )
            )

    async def _close_unmask(self) -> None:
        u2, u3, t = self.live[-3], self.live[-2], self.params.threshold
        dropped = sorted(u2 - u3)
        if any(len(self._s_shares.get(i, {})) < t for i in dropped) or any(
            len(self._b_shares.get(i, {})) < t for i in u3
        ):
            self._abandon("too_few_shares")
            return
        people = self._people
        work = Unmasking(
            self.crypto,
            self.ops,
            self._salt,
            t,
            self.params.dimension,
            dropped={
                i: (
                    dict(self._s_shares[i]),
                    people[i].s_pk,
                    {j: people[j].s_pk for j in people[i].masked_with & u3},
                )
                for i in dropped
            },
            survivors={i: dict(self._b_shares[i]) for i in u3},
        )
        self._unmasking = True
        try:
            correction = await self._offload(work.correction)
        except (ReconstructionError, CryptoError):
            # Shares that rebuild nothing, or a survivor's key that agrees on nothing (a broken
            # or hostile worker): the masks cannot be cancelled, the round ends unrevealed.
            self._abandon("reconstruction_failed")
            return
        finally:
            self._unmasking = False
        self.result = self.sink.unmask(correction)
        self.phase = _P.DONE
        self._forget_shares()

    # -- ends -----------------------------------------------------------------------------------

    def _drop(self, index: int) -> None:
        """A participant that broke the protocol in the open phase: it is not in the phase's
        live set. The earlier sets stay as they were (its masks may be in the sum)."""
        self._waiting.discard(index)

    def _tell_abort(self, index: int, reason: str) -> None:
        if index not in self._aborted:
            self._aborted.add(index)
            self.outbox.append((index, Abort(self.task, self.round, reason)))

    def _abandon(self, reason: str) -> None:
        """End the round with nothing revealed: everyone still in it is told to abort."""
        for i in sorted(self.live[-2]):
            self._tell_abort(i, reason)
        self.phase = _P.ABANDONED
        self.abandon_reason = reason
        self._forget()

    def _forget(self) -> None:
        self.sink.discard()
        self._forget_shares()

    def _forget_shares(self) -> None:
        self._s_shares.clear()
        self._b_shares.clear()

    def _setup(self, p: _Participant) -> Setup:
        q = self.params
        return Setup(
            self.task,
            self.round,
            index=p.index,
            n=q.n,
            degree=q.degree,
            threshold=q.threshold,
            seed=self.seed,
            dimension=q.dimension,
            clip_norm=q.clip_norm,
            scale_bits=q.scale_bits,
            min_survivors=q.min_survivors,
            nonce=p.nonce,
            timeouts=q.timeouts.to_dict(),
        )
