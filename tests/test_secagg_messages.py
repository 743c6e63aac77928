"""Secure aggregation's control messages: every type survives its JSON form, and a message that
breaks its shape is refused with a reason naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dandelion.protocol import MessageError
from dandelion.protocol.secagg.messages import (
    CIPHERTEXT_BYTES,
    SECAGG_TYPES,
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
    encode_secagg,
    parse_secagg,
)
from dandelion.protocol.secagg.params import Timeouts

KEY = bytes(range(32))
CT = bytes(CIPHERTEXT_BYTES)
SHARE = bytes(66)

SETUP = Setup(
    "demo",
    4,
    index=2,
    n=5,
    degree=4,
    threshold=3,
    seed=bytes(range(32)),
    dimension=10,
    clip_norm=1.5,
    scale_bits=20,
    min_survivors=3,
    nonce="r4",
    timeouts=Timeouts().to_dict(),
)

MESSAGES: list[SecAggMessage] = [
    SETUP,
    Advertise("demo", 4, KEY, KEY[::-1]),
    NeighbourKeysMessage("demo", 4, (NeighbourKeys(1, KEY, KEY), NeighbourKeys(3, KEY, KEY))),
    Shares("demo", 4, (EncryptedShare(1, CT), EncryptedShare(3, CT))),
    Relay("demo", 4, (EncryptedShare(3, CT),)),
    MaskedInput("demo", 4, "r4"),
    Unmask("demo", 4, (1,), (3, 4)),
    Reveal("demo", 4, {1: SHARE}, {3: SHARE, 4: SHARE}),
    Abort("demo", 4, "too_few_survivors"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.TYPE)
def test_every_message_survives_its_json_form(msg: SecAggMessage) -> None:
    text = encode_secagg(msg)
    assert json.loads(text)["type"] == msg.TYPE
    assert parse_secagg(text) == msg
    assert parse_secagg(text.encode()) == msg


def _broken(msg: SecAggMessage, **changes: Any) -> dict[str, Any]:
    raw = json.loads(encode_secagg(msg))
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (_broken(SETUP, type="secagg_nothing"), "not a secure-aggregation message"),
        (_broken(SETUP, v=2), "v must be 1"),
        (_broken(SETUP, task="Not A Task"), "task must be"),
        (_broken(SETUP, round=0), "round must be"),
        (_broken(SETUP, index=6), "index must be"),
        (_broken(SETUP, seed="00" * 31), "seed must be 32 bytes"),
        (_broken(SETUP, seed="AB" * 32), "seed must be 32 bytes as lowercase hex"),
        (_broken(SETUP, clip_norm=True), "clip_norm"),
        (_broken(SETUP, scale_bits=25), "scale_bits"),
        (_broken(SETUP, timeouts={"advertise_s": 1}), "timeouts must hold"),
        (_broken(SETUP, timeouts={**SETUP.timeouts, "share_s": 0}), "timeouts.share_s"),
        (_broken(MESSAGES[1], c_pk="00"), "c_pk must be 32 bytes"),
        (_broken(MESSAGES[2], neighbours=[{"index": 1}]), "each entry of neighbours"),
        (
            _broken(
                MESSAGES[2],
                neighbours=[{"index": 1, "c_pk": KEY.hex(), "s_pk": KEY.hex()}] * 2,
            ),
            "names an index twice",
        ),
        (_broken(MESSAGES[3], shares=[{"to": 0, "ciphertext": CT.hex()}]), "shares.to"),
        (_broken(MESSAGES[3], shares=[{"to": 1, "ciphertext": "00"}]), "shares.ciphertext"),
        (_broken(MESSAGES[4], shares=[{"to": 1, "ciphertext": CT.hex()}]), "with from"),
        (_broken(MESSAGES[5], nonce="no spaces"), "nonce"),
        (_broken(MESSAGES[6], dropped=[1, 1]), "dropped names an index twice"),
        (_broken(MESSAGES[6], survivors="3"), "survivors must be a list"),
        (_broken(MESSAGES[7], s_shares=[{"of": 1, "share": "00"}]), "s_shares.share"),
        (_broken(MESSAGES[8], reason="bored"), "reason must be one of"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw: object, match: str) -> None:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    with pytest.raises(MessageError, match=match) as caught:
        parse_secagg(text)
    if isinstance(raw, dict) and raw["type"] in SECAGG_TYPES:
        assert caught.value.ref_type == raw["type"]  # the reply can name what it refused
    else:
        assert caught.value.ref_type is None
