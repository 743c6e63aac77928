"""An in-process secure round: one SecAggServer and n SecAggClients joined by a loop that
carries every message through its JSON form (and the masked frames as bytes), phase by phase,
with the dropouts a test asks for."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from dandelion.crypto import CryptographyHost, NumpyMod32
from dandelion.protocol.errors import RemoteProtocolError
from dandelion.protocol.secagg import (
    SecAggParams,
    StdlibMod32,
    encode,
    neighbourhoods,
    round_salt,
)
from dandelion.protocol.secagg.client import ClientState, SecAggClient
from dandelion.protocol.secagg.messages import SecAggMessage, encode_secagg, parse_secagg
from dandelion.protocol.secagg.server import Phase, SecAggServer

HOST = CryptographyHost()
Reply = tuple[SecAggMessage, bytes | None]
#: Changes one client's reply on its way to the server (a broken or hostile worker).
Tamper = Callable[[SecAggMessage, bytes | None], Reply]
PHASES = (Phase.ADVERTISE, Phase.SHARE, Phase.MASKED, Phase.UNMASK)


def wire(msg: SecAggMessage) -> SecAggMessage:
    """The message as the other side parses it."""
    return parse_secagg(encode_secagg(msg))


@dataclass
class Round:
    n: int
    d: int = 16
    clip: float = 1.0
    degree: int | None = None
    threshold: int | None = None
    seed: bytes = bytes(range(32))
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        self.params = SecAggParams.choose(
            self.n, self.d, self.clip, degree=self.degree, threshold=self.threshold
        )
        self.server = SecAggServer(
            self.params, "demo", 7, HOST, 0.0, ops=NumpyMod32(), seed=self.seed
        )
        self.clients = {i: SecAggClient(HOST, StdlibMod32()) for i in range(1, self.n + 1)}
        self.updates = {
            i: [self.rng.uniform(-self.clip, self.clip) for _ in range(self.d)]
            for i in self.clients
        }
        self.now = 0.0
        self.gone: set[int] = set()
        self.sent_masked: set[int] = set()
        self.received: list[tuple[int, SecAggMessage]] = []  # everything the clients got
        self.masked_frames: dict[int, bytes] = {}  # what the server got, by sender
        self.tamper: dict[tuple[int, str], Tamper] = {}  # (index, message type) -> change
        self.refused: dict[int, RemoteProtocolError] = {}  # what the server refused, by sender

    @property
    def graph(self) -> dict[int, frozenset[int]]:
        return neighbourhoods(self.n, self.params.degree, round_salt("demo", 7, self.seed))

    async def phase(self, drop: set[int] | None = None) -> None:
        """Deliver what the server queued; live clients not in ``drop`` answer; then the
        phase closes (at its deadline if someone stayed silent)."""
        self.gone |= drop or set()
        phase = self.server.phase
        replies: list[tuple[int, SecAggMessage, bytes | None]] = []
        for i, msg in self.server.take_outbox():
            self.received.append((i, msg))
            if i in self.gone:
                continue
            client = self.clients[i]
            replies.extend((i, wire(out), None) for out in await client.receive(wire(msg)))
            if client.state is ClientState.RELAYED:
                masked, frame = await client.mask(self.updates[i])
                replies.append((i, wire(masked), frame))
        for i, msg, frame in replies:
            change = self.tamper.get((i, msg.TYPE))
            if change is not None:
                msg, frame = change(msg, frame)
            try:
                await self.server.receive(i, msg, self.now, frame)
            except RemoteProtocolError as exc:
                self.refused[i] = exc
                continue
            if frame is not None:
                self.masked_frames[i] = frame
                self.sent_masked.add(i)
        if self.server.phase is phase:
            self.now = self.server.deadline
            await self.server.tick(self.now)

    async def run(self, drops: dict[Phase, set[int]] | None = None) -> None:
        drops = drops or {}
        for phase in PHASES:
            if self.server.finished:
                break
            assert self.server.phase is phase
            await self.phase(drops.get(phase, set()))
        await self.deliver_rest()

    async def deliver_rest(self) -> None:
        for i, msg in self.server.take_outbox():
            self.received.append((i, msg))
            if i not in self.gone:
                assert await self.clients[i].receive(wire(msg)) == []

    def expected_total(self) -> bytes:
        total = StdlibMod32().zeros(self.d)
        for i in sorted(self.sent_masked):
            StdlibMod32().add_into(
                total, encode(self.updates[i], self.clip, self.params.scale_bits)
            )
        return bytes(total)
