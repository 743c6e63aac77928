"""Secure aggregation's control messages: one frozen dataclass per type, and their JSON form.

Rules of this file: the shape of each message, nothing of when it may be sent (that is the
client's and the server's tables). Every field is checked here — type, range, hex length — so
a worker that parses without ``schemas/secagg/`` gets the same answer as the schemas give;
unknown fields are ignored (the coordinator's schema check refuses them on the way in). Byte
strings travel as lowercase hex. The masked vector itself is a binary tensor frame of type
``masked``, dtype ``uint32``, right after ``secagg_masked``.

Raises :class:`~dandelion.protocol.errors.MessageError` for a message that breaks its shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import MessageError
from ..versions import PROTOCOL_VERSION
from .crypto import KEY_BYTES, TAG_BYTES
from .derivation import SHARE_PLAINTEXT_BYTES
from .params import PHASE_TIMEOUTS
from .shamir import SHARE_BYTES

__all__ = [
    "ABORT_REASONS",
    "CIPHERTEXT_BYTES",
    "SECAGG_TYPES",
    "Abort",
    "Advertise",
    "EncryptedShare",
    "MaskedInput",
    "NeighbourKeys",
    "NeighbourKeysMessage",
    "Relay",
    "Reveal",
    "SecAggMessage",
    "Setup",
    "Shares",
    "Unmask",
    "encode_secagg",
    "parse_secagg",
]

Json = dict[str, Any]
MAX_INDEX = 2**31 - 1
CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + TAG_BYTES
_TASK = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX = re.compile(r"[0-9a-f]*")

#: Why a round was abandoned (secagg_abort.reason).
ABORT_REASONS = frozenset(
    {
        "too_few_neighbours",  # this participant kept fewer than t live neighbours
        "too_few_survivors",  # the round could not finish: nothing was revealed
        "too_few_shares",  # the unmasking phase got fewer than t shares of someone
        "reconstruction_failed",  # shares that did not rebuild a secret, or the wrong key
    }
)


class SecAggMessage:
    """Base of every secure-aggregation message: ``type``, ``v``, ``task``, ``round``."""

    TYPE: ClassVar[str] = ""
    task: str
    round: int

    def body(self) -> Json:
        raise NotImplementedError

    def to_dict(self) -> Json:
        return {
            "type": self.TYPE,
            "v": PROTOCOL_VERSION,
            "task": self.task,
            "round": self.round,
            **self.body(),
        }


@dataclass(frozen=True, slots=True)
class Setup(SecAggMessage):
    """Coordinator to worker: the round's parameters and this participant's index."""

    TYPE: ClassVar[str] = "secagg_setup"
    task: str
    round: int
    index: int
    n: int
    degree: int
    threshold: int
    seed: bytes
    dimension: int
    clip_norm: float
    scale_bits: int
    min_survivors: int
    nonce: str
    timeouts: dict[str, float]

    def body(self) -> Json:
        return {
            "index": self.index,
            "n": self.n,
            "degree": self.degree,
            "threshold": self.threshold,
            "seed": self.seed.hex(),
            "dimension": self.dimension,
            "clip_norm": self.clip_norm,
            "scale_bits": self.scale_bits,
            "min_survivors": self.min_survivors,
            "nonce": self.nonce,
            "timeouts": dict(self.timeouts),
        }


@dataclass(frozen=True, slots=True)
class Advertise(SecAggMessage):
    """Worker to coordinator: its two public keys for the round."""

    TYPE: ClassVar[str] = "secagg_advertise"
    task: str
    round: int
    c_pk: bytes
    s_pk: bytes

    def body(self) -> Json:
        return {"c_pk": self.c_pk.hex(), "s_pk": self.s_pk.hex()}


@dataclass(frozen=True, slots=True)
class NeighbourKeys:
    """One neighbour's index and public keys."""

    index: int
    c_pk: bytes
    s_pk: bytes


@dataclass(frozen=True, slots=True)
class NeighbourKeysMessage(SecAggMessage):
    """Coordinator to worker: the public keys of its neighbours that advertised."""

    TYPE: ClassVar[str] = "secagg_keys"
    task: str
    round: int
    neighbours: tuple[NeighbourKeys, ...]

    def body(self) -> Json:
        return {
            "neighbours": [
                {"index": k.index, "c_pk": k.c_pk.hex(), "s_pk": k.s_pk.hex()}
                for k in self.neighbours
            ]
        }


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    """A share ciphertext and the other end's index (its receiver, or in a relay its sender)."""

    peer: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Shares(SecAggMessage):
    """Worker to coordinator: one share ciphertext to each neighbour (``peer`` = receiver)."""

    TYPE: ClassVar[str] = "secagg_shares"
    task: str
    round: int
    shares: tuple[EncryptedShare, ...]

    def body(self) -> Json:
        return {"shares": [{"to": s.peer, "ciphertext": s.ciphertext.hex()} for s in self.shares]}


@dataclass(frozen=True, slots=True)
class Relay(SecAggMessage):
    """Coordinator to worker: the ciphertexts addressed to it (``peer`` = sender)."""

    TYPE: ClassVar[str] = "secagg_relay"
    task: str
    round: int
    shares: tuple[EncryptedShare, ...]

    def body(self) -> Json:
        return {"shares": [{"from": s.peer, "ciphertext": s.ciphertext.hex()} for s in self.shares]}


@dataclass(frozen=True, slots=True)
class MaskedInput(SecAggMessage):
    """Worker to coordinator: announces the masked frame that follows at once."""

    TYPE: ClassVar[str] = "secagg_masked"
    task: str
    round: int
    nonce: str

    def body(self) -> Json:
        return {"nonce": self.nonce}


@dataclass(frozen=True, slots=True)
class Unmask(SecAggMessage):
    """Coordinator to worker: which of its neighbours dropped and which survived."""

    TYPE: ClassVar[str] = "secagg_unmask"
    task: str
    round: int
    dropped: tuple[int, ...]
    survivors: tuple[int, ...]

    def body(self) -> Json:
        return {"dropped": list(self.dropped), "survivors": list(self.survivors)}


@dataclass(frozen=True, slots=True)
class Reveal(SecAggMessage):
    """Worker to coordinator: s-key shares of dropped neighbours, seed shares of survivors."""

    TYPE: ClassVar[str] = "secagg_reveal"
    task: str
    round: int
    s_shares: dict[int, bytes]
    b_shares: dict[int, bytes]

    def body(self) -> Json:
        return {
            "s_shares": [{"of": i, "share": s.hex()} for i, s in sorted(self.s_shares.items())],
            "b_shares": [{"of": i, "share": s.hex()} for i, s in sorted(self.b_shares.items())],
        }


@dataclass(frozen=True, slots=True)
class Abort(SecAggMessage):
    """Coordinator to worker: the round is abandoned; forget its secrets."""

    TYPE: ClassVar[str] = "secagg_abort"
    task: str
    round: int
    reason: str

    def body(self) -> Json:
        return {"reason": self.reason}


_CLASSES: dict[str, type[SecAggMessage]] = {
    c.TYPE: c
    for c in (
        Setup,
        Advertise,
        NeighbourKeysMessage,
        Shares,
        Relay,
        MaskedInput,
        Unmask,
        Reveal,
        Abort,
    )
}
SECAGG_TYPES = frozenset(_CLASSES)


def encode_secagg(msg: SecAggMessage) -> str:
    """The message as compact JSON text."""
    return json.dumps(msg.to_dict(), separators=(",", ":"))


def parse_secagg(raw: str | bytes | Json) -> SecAggMessage:
    """Parse JSON text (or an already parsed object) into its message. Raises MessageError."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MessageError("a message must be a JSON object")
    mtype = raw.get("type")
    if mtype not in _CLASSES:
        raise MessageError(f"not a secure-aggregation message type: {mtype!r}")
    if type(raw.get("v")) is not int or raw["v"] != PROTOCOL_VERSION:
        raise MessageError(f"v must be {PROTOCOL_VERSION}", ref_type=mtype)
    task, rnd = raw.get("task"), raw.get("round")
    if not isinstance(task, str) or not _TASK.fullmatch(task):
        raise MessageError("task must be a task name", ref_type=mtype)
    rnd = _int(raw, "round", 1, 2**53 - 1, mtype)
    try:
        return _PARSERS[mtype](raw, task, rnd)
    except MessageError as exc:
        raise MessageError(exc.detail, ref_type=mtype) from None


def _int(raw: Json, name: str, lo: int, hi: int, where: str = "") -> int:
    value = raw.get(name)
    if type(value) is not int or not lo <= value <= hi:
        raise MessageError(f"{name} must be an integer in [{lo}, {hi}]", ref_type=where or None)
    return value


def _index(value: object, name: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_INDEX:
        raise MessageError(f"{name} must be a participant index in [1, {MAX_INDEX}]")
    return value


def _hex(value: object, name: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise MessageError(f"{name} must be {size} bytes as lowercase hex")
    return bytes.fromhex(value)


def _list(raw: Json, name: str, limit: int = MAX_INDEX) -> list[Any]:
    value = raw.get(name)
    if not isinstance(value, list) or len(value) > limit:
        raise MessageError(f"{name} must be a list")
    return value


def _entries(raw: Json, name: str, keys: tuple[str, ...]) -> list[Json]:
    items = _list(raw, name)
    if not all(isinstance(e, dict) and all(k in e for k in keys) for e in items):
        raise MessageError(f"each entry of {name} must be an object with {', '.join(keys)}")
    return items


def _unique(indices: list[int], name: str) -> tuple[int, ...]:
    if len(set(indices)) != len(indices):
        raise MessageError(f"{name} names an index twice")
    return tuple(indices)


def _setup(raw: Json, task: str, rnd: int) -> Setup:
    n = _int(raw, "n", 2, MAX_INDEX)
    clip = raw.get("clip_norm")
    if not isinstance(clip, int | float) or isinstance(clip, bool) or not 0 < clip <= 1e9:
        raise MessageError("clip_norm must be a number in (0, 1e9]")
    nonce = raw.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise MessageError("nonce must be 1-64 of A-Z a-z 0-9 _ -")
    timeouts = raw.get("timeouts")
    if not isinstance(timeouts, dict) or set(timeouts) != set(PHASE_TIMEOUTS):
        raise MessageError(f"timeouts must hold exactly {sorted(PHASE_TIMEOUTS)}")
    for name, value in timeouts.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 86400:
            raise MessageError(f"timeouts.{name} must be a number of seconds in (0, 86400]")
    return Setup(
        task,
        rnd,
        index=_int(raw, "index", 1, n),
        n=n,
        degree=_int(raw, "degree", 1, n - 1),
        threshold=_int(raw, "threshold", 1, n - 1),
        seed=_hex(raw.get("seed"), "seed", 32),
        dimension=_int(raw, "dimension", 1, 2**28 - 1),
        clip_norm=float(clip),
        scale_bits=_int(raw, "scale_bits", 0, 24),
        min_survivors=_int(raw, "min_survivors", 1, n),
        nonce=nonce,
        timeouts={k: float(v) for k, v in timeouts.items()},
    )


def _advertise(raw: Json, task: str, rnd: int) -> Advertise:
    return Advertise(
        task,
        rnd,
        _hex(raw.get("c_pk"), "c_pk", KEY_BYTES),
        _hex(raw.get("s_pk"), "s_pk", KEY_BYTES),
    )


def _keys(raw: Json, task: str, rnd: int) -> NeighbourKeysMessage:
    items = [
        NeighbourKeys(
            _index(e["index"], "neighbours.index"),
            _hex(e["c_pk"], "neighbours.c_pk", KEY_BYTES),
            _hex(e["s_pk"], "neighbours.s_pk", KEY_BYTES),
        )
        for e in _entries(raw, "neighbours", ("index", "c_pk", "s_pk"))
    ]
    _unique([k.index for k in items], "neighbours")
    return NeighbourKeysMessage(task, rnd, tuple(items))


def _ciphertexts(raw: Json, peer: str) -> tuple[EncryptedShare, ...]:
    items = [
        EncryptedShare(
            _index(e[peer], f"shares.{peer}"),
            _hex(e["ciphertext"], "shares.ciphertext", CIPHERTEXT_BYTES),
        )
        for e in _entries(raw, "shares", (peer, "ciphertext"))
    ]
    _unique([s.peer for s in items], "shares")
    return tuple(items)


def _shares(raw: Json, task: str, rnd: int) -> Shares:
    return Shares(task, rnd, _ciphertexts(raw, "to"))


def _relay(raw: Json, task: str, rnd: int) -> Relay:
    return Relay(task, rnd, _ciphertexts(raw, "from"))


def _masked(raw: Json, task: str, rnd: int) -> MaskedInput:
    nonce = raw.get("nonce")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise MessageError("nonce must be 1-64 of A-Z a-z 0-9 _ -")
    return MaskedInput(task, rnd, nonce)


def _indices(raw: Json, name: str) -> tuple[int, ...]:
    return _unique([_index(i, name) for i in _list(raw, name)], name)


def _unmask(raw: Json, task: str, rnd: int) -> Unmask:
    return Unmask(task, rnd, _indices(raw, "dropped"), _indices(raw, "survivors"))


def _share_map(raw: Json, name: str) -> dict[int, bytes]:
    items = [
        (_index(e["of"], f"{name}.of"), _hex(e["share"], f"{name}.share", SHARE_BYTES))
        for e in _entries(raw, name, ("of", "share"))
    ]
    _unique([i for i, _ in items], name)
    return dict(items)


def _reveal(raw: Json, task: str, rnd: int) -> Reveal:
    return Reveal(task, rnd, _share_map(raw, "s_shares"), _share_map(raw, "b_shares"))


def _abort(raw: Json, task: str, rnd: int) -> Abort:
    reason = raw.get("reason")
    if reason not in ABORT_REASONS:
        raise MessageError(f"reason must be one of {sorted(ABORT_REASONS)}")
    return Abort(task, rnd, reason)


_PARSERS: dict[str, Callable[[Json, str, int], SecAggMessage]] = {
    "secagg_setup": _setup,
    "secagg_advertise": _advertise,
    "secagg_keys": _keys,
    "secagg_shares": _shares,
    "secagg_relay": _relay,
    "secagg_masked": _masked,
    "secagg_unmask": _unmask,
    "secagg_reveal": _reveal,
    "secagg_abort": _abort,
}
