"""The worker's side of a secure round, sans I/O (docs/secure_aggregation.md, The phases).

Rules of this file: the client takes whole coordinator messages in and hands back the messages
to send; it never reads a clock, never touches a socket, and awaits only the injected
:class:`~dandelion.protocol.secagg.crypto.CryptoHost`. Which message may come in which state is
the one table ``_TRANSITIONS``. Anything the coordinator sends that breaks the protocol raises
:class:`~dandelion.protocol.secagg.errors.SecAggViolation` (a ``CryptoError`` for a ciphertext
that does not authenticate) and aborts the round here: the client forgets its secrets and
answers nothing more. It reveals, per neighbour, one kind of share only, and answers the
unmasking request once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LocalProtocolError
from ..frames import FrameHeader, encode_frame
from .crypto import KEY_BYTES, CryptoHost
from .derivation import decrypt_share, encrypt_share, share_key
from .errors import SecAggConfigError, SecAggViolation
from .fixedpoint import encode
from .graph import neighbourhoods, round_salt
from .masking import mask_input
from .messages import (
    Advertise,
    EncryptedShare,
    MaskedInput,
    NeighbourKeysMessage,
    Relay,
    Reveal,
    SecAggMessage,
    Setup,
    Shares,
    Unmask,
)
from .params import SecAggParams, Timeouts
from .shamir import split
from .vectors import Mod32Ops, StdlibMod32

__all__ = ["ClientState", "SecAggClient"]


class ClientState(enum.Enum):
    START = "start"  # waiting for secagg_setup
    ADVERTISED = "advertised"  # sent secagg_advertise, waiting for secagg_keys
    SHARED = "shared"  # sent secagg_shares, waiting for secagg_relay
    RELAYED = "relayed"  # holds its neighbours' shares; waiting for the caller's update
    MASKED = "masked"  # sent the masked vector, waiting for secagg_unmask
    DONE = "done"  # sent secagg_reveal: nothing more to do
    ABORTED = "aborted"  # secagg_abort, or a violation: secrets forgotten


_S = ClientState
_MASK = "mask"  # the caller's update, not a message
_ABORT = "secagg_abort"
_TRANSITIONS: dict[ClientState, dict[str, ClientState]] = {
    _S.START: {"secagg_setup": _S.ADVERTISED},
    _S.ADVERTISED: {"secagg_keys": _S.SHARED, _ABORT: _S.ABORTED},
    _S.SHARED: {"secagg_relay": _S.RELAYED, _ABORT: _S.ABORTED},
    _S.RELAYED: {_MASK: _S.MASKED, _ABORT: _S.ABORTED},
    _S.MASKED: {"secagg_unmask": _S.DONE, _ABORT: _S.ABORTED},
    _S.DONE: {_ABORT: _S.ABORTED},  # the round failed after this worker revealed
    _S.ABORTED: {},
}


@dataclass(slots=True)
class _Neighbour:
    c_pk: bytes
    s_pk: bytes
    s_share: bytes | None = None  # its share of its s key, once relayed
    b_share: bytes | None = None  # its share of its self-mask seed, once relayed


class SecAggClient:
    """One participant of one secure round."""

    def __init__(self, crypto: CryptoHost, ops: Mod32Ops | None = None) -> None:
        self.crypto = crypto
        self.ops = ops or StdlibMod32()
        self.state = _S.START
        self.setup: Setup | None = None
        self.params: SecAggParams | None = None
        self.abort_reason: str | None = None
        self._salt = b""
        self._graph: frozenset[int] = frozenset()
        self._c_sk = self._s_sk = self._seed = b""
        self._neighbours: dict[int, _Neighbour] = {}
        self._masked_with: frozenset[int] = frozenset()

    # -- the one entry for coordinator messages ---------------------------------------------

    async def receive(self, msg: SecAggMessage) -> list[SecAggMessage]:
        """Take one coordinator message; return what to send. Raises SecAggViolation."""
        self._move(msg.TYPE)
        try:
            if isinstance(msg, Setup):
                return [await self._on_setup(msg)]
            self._check_round(msg)
            if isinstance(msg, NeighbourKeysMessage):
                return [await self._on_keys(msg)]
            if isinstance(msg, Relay):
                await self._on_relay(msg)
                return []
            if isinstance(msg, Unmask):
                return [self._on_unmask(msg)]
            assert msg.TYPE == _ABORT  # the table admits nothing else
            self.abort_reason = getattr(msg, "reason", None)
            self._forget()
            return []
        except SecAggViolation:
            self._fail()
            raise

    async def mask(self, values: Sequence[float]) -> tuple[MaskedInput, bytes]:
        """Encode, clamp and mask this worker's clipped update; return ``secagg_masked`` and
        the masked tensor frame that must follow it. Raises SecAggConfigError for values
        that are not d finite numbers (the round goes on: call again with good ones)."""
        if self.state is not _S.RELAYED:
            raise LocalProtocolError(f"no masked input in state {self.state.value}")
        setup, params = self._round()
        if len(values) != params.dimension:
            raise SecAggConfigError(f"an update of {params.dimension} values, not {len(values)}")
        encoded = encode(values, params.clip_norm, params.scale_bits)
        peers = {j: self._neighbours[j].s_pk for j in self._masked_with}
        try:
            masked = await mask_input(
                self.crypto,
                self.ops,
                self._salt,
                setup.index,
                self._s_sk,
                self._seed,
                peers,
                encoded,
                params.dimension,
            )
        except SecAggViolation:  # a neighbour's s key that agrees on nothing
            self._fail()
            raise
        self._move(_MASK)
        self._c_sk = self._s_sk = self._seed = b""  # shared already; no longer needed here
        header = FrameHeader(
            "masked", setup.task, setup.round, setup.nonce, "uint32", (params.dimension,)
        )
        msg = MaskedInput(setup.task, setup.round, setup.nonce)
        return msg, encode_frame(header, masked)

    # -- phases -------------------------------------------------------------------------------

    async def _on_setup(self, msg: Setup) -> Advertise:
        try:
            self.params = SecAggParams(
                n=msg.n,
                degree=msg.degree,
                threshold=msg.threshold,
                dimension=msg.dimension,
                clip_norm=msg.clip_norm,
                scale_bits=msg.scale_bits,
                min_survivors=msg.min_survivors,
                timeouts=Timeouts(**msg.timeouts),
            )
            self._salt = round_salt(msg.task, msg.round, msg.seed)
        except (SecAggConfigError, TypeError) as exc:
            raise SecAggViolation(f"setup parameters refused: {exc}", ref_type=msg.TYPE) from None
        self.setup = msg
        self._graph = neighbourhoods(msg.n, msg.degree, self._salt)[msg.index]
        self._c_sk = self.crypto.random_bytes(KEY_BYTES)
        self._s_sk = self.crypto.random_bytes(KEY_BYTES)
        self._seed = self.crypto.random_bytes(KEY_BYTES)
        c_pk = await self.crypto.x25519_public(self._c_sk)
        s_pk = await self.crypto.x25519_public(self._s_sk)
        return Advertise(msg.task, msg.round, c_pk, s_pk)

    async def _on_keys(self, msg: NeighbourKeysMessage) -> Shares:
        setup, params = self._round()
        indices = {k.index for k in msg.neighbours}
        if not indices <= self._graph:
            raise SecAggViolation(
                f"keys of non-neighbours {sorted(indices - self._graph)}", ref_type=msg.TYPE
            )
        if len(indices) < params.threshold:
            raise SecAggViolation(
                f"{len(indices)} neighbours' keys, threshold {params.threshold}",
                ref_type=msg.TYPE,
            )
        self._neighbours = {k.index: _Neighbour(k.c_pk, k.s_pk) for k in msg.neighbours}
        xs = sorted(indices)
        random = self.crypto.random_bytes
        s_shares = split(self._s_sk, params.threshold, xs, random)
        b_shares = split(self._seed, params.threshold, xs, random)
        out = []
        for j in xs:
            key = await share_key(
                self.crypto, self._salt, self._c_sk, self._neighbours[j].c_pk, setup.index, j
            )
            sealed = await encrypt_share(self.crypto, key, setup.index, j, s_shares[j], b_shares[j])
            out.append(EncryptedShare(j, sealed))
        return Shares(setup.task, setup.round, tuple(out))

    async def _on_relay(self, msg: Relay) -> None:
        setup, params = self._round()
        senders = {s.peer for s in msg.shares}
        if not senders <= set(self._neighbours):
            raise SecAggViolation(
                f"shares relayed from {sorted(senders - set(self._neighbours))}, "
                "which were not among the keys",
                ref_type=msg.TYPE,
            )
        if len(senders) < params.threshold:
            raise SecAggViolation(
                f"{len(senders)} relayed shares, threshold {params.threshold}", ref_type=msg.TYPE
            )
        for item in msg.shares:
            peer = self._neighbours[item.peer]
            key = await share_key(
                self.crypto, self._salt, self._c_sk, peer.c_pk, setup.index, item.peer
            )
            peer.s_share, peer.b_share = await decrypt_share(
                self.crypto, key, item.peer, setup.index, item.ciphertext
            )
        self._masked_with = frozenset(senders)

    def _on_unmask(self, msg: Unmask) -> Reveal:
        setup = self.setup
        assert setup is not None
        dropped, survivors = set(msg.dropped), set(msg.survivors)
        if dropped & survivors:
            raise SecAggViolation(
                f"{sorted(dropped & survivors)} named both dropped and surviving",
                ref_type=msg.TYPE,
            )
        strangers = (dropped | survivors) - self._masked_with
        if strangers:
            raise SecAggViolation(
                f"{sorted(strangers)} are not neighbours this worker masked with",
                ref_type=msg.TYPE,
            )
        s_shares = {j: self._share(j, "s") for j in sorted(dropped)}
        b_shares = {j: self._share(j, "b") for j in sorted(survivors)}
        self._forget()
        return Reveal(setup.task, setup.round, s_shares, b_shares)

    # -- helpers ------------------------------------------------------------------------------

    def _round(self) -> tuple[Setup, SecAggParams]:
        if self.setup is None or self.params is None:  # the table admits no message before
            raise LocalProtocolError("no round set up")
        return self.setup, self.params

    def _share(self, j: int, kind: str) -> bytes:
        peer = self._neighbours[j]
        share = peer.s_share if kind == "s" else peer.b_share
        assert share is not None  # every j in _masked_with was decrypted
        return share

    def _check_round(self, msg: SecAggMessage) -> None:
        setup = self.setup
        assert setup is not None
        if (msg.task, msg.round) != (setup.task, setup.round):
            raise SecAggViolation(
                f"a message of {msg.task} round {msg.round} in {setup.task} round {setup.round}",
                ref_type=msg.TYPE,
            )

    def _move(self, event: str) -> None:
        target = _TRANSITIONS[self.state].get(event)
        if target is None:
            if event == _MASK:
                raise LocalProtocolError(f"no masked input in state {self.state.value}")
            raise SecAggViolation(
                f"{event} is not expected in state {self.state.value}", ref_type=event
            )
        self.state = target

    def _forget(self) -> None:
        self._c_sk = self._s_sk = self._seed = b""
        self._neighbours = {}

    def _fail(self) -> None:
        self.state = _S.ABORTED
        self.abort_reason = "violation"
        self._forget()
