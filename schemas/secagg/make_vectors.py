"""Write ``vectors.json``: fixed inputs and outputs of every cryptographic step of secure
aggregation (docs/secure_aggregation.md), computed by the CPython crypto host.

Deterministic: every input is a published test vector or SHA-256 of a label. A host
(``cryptography`` in CPython, WebCrypto in the browser) takes part only if it reproduces the
file byte for byte (tests/test_secagg_vectors.py). Run: ``python schemas/secagg/make_vectors.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from dandelion.crypto import CryptographyHost
from dandelion.protocol.secagg import StdlibMod32, encode, neighbourhoods, round_salt, split
from dandelion.protocol.secagg.derivation import (
    encrypt_share,
    pairwise_mask,
    self_mask,
    self_mask_key,
    share_key,
)
from dandelion.protocol.secagg.masking import mask_input

OUT = Path(__file__).resolve().parent / "vectors.json"
Json = dict[str, Any]


def fixed(label: str, n: int = 32) -> bytes:
    """n bytes that anyone can recompute: SHA-256 of the label, counter-extended."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


async def build() -> Json:
    host = CryptographyHost()
    task, rnd, seed = "revisit-7d", 12, fixed("round seed")
    salt = round_salt(task, rnd, seed)
    keys = {i: (fixed(f"c_sk {i}"), fixed(f"s_sk {i}")) for i in (1, 2, 3, 4, 5)}
    pub = {
        i: (await host.x25519_public(c), await host.x25519_public(s)) for i, (c, s) in keys.items()
    }
    d = 8

    x25519: list[Json] = [
        {
            "source": "RFC 7748 section 6.1",
            "private": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
            "peer_private": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        },
        {
            "source": "c keys of 1 and 2",
            "private": keys[1][0].hex(),
            "peer_private": keys[2][0].hex(),
        },
        {
            "source": "s keys of 3 and 5",
            "private": keys[3][1].hex(),
            "peer_private": keys[5][1].hex(),
        },
    ]
    for e in x25519:
        sk, peer_sk = bytes.fromhex(e["private"]), bytes.fromhex(e["peer_private"])
        e["public"] = (await host.x25519_public(sk)).hex()
        e["peer_public"] = (await host.x25519_public(peer_sk)).hex()
        e["shared"] = (await host.x25519_agree(sk, bytes.fromhex(e["peer_public"]))).hex()

    hkdf: list[Json] = [
        {
            "source": "RFC 5869 test case 1",
            "ikm": (b"\x0b" * 22).hex(),
            "salt": bytes(range(13)).hex(),
            "info": bytes(range(0xF0, 0xFA)).hex(),
            "length": 42,
        },
        {
            "source": "a share key's derivation",
            "ikm": fixed("ikm").hex(),
            "salt": salt.hex(),
            "info": (b"share" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")).hex(),
            "length": 32,
        },
    ]
    for e in hkdf:
        e["okm"] = (
            await host.hkdf_sha256(
                bytes.fromhex(e["ikm"]),
                bytes.fromhex(e["salt"]),
                bytes.fromhex(e["info"]),
                e["length"],
            )
        ).hex()

    ctr: list[Json] = [
        {
            "source": "AES-256 known answer: zero key, zero block",
            "key": bytes(32).hex(),
            "length": 16,
        },
        {
            "source": "several blocks and a partial one",
            "key": fixed("ctr key").hex(),
            "length": 100,
        },
    ]
    for e in ctr:
        e["keystream"] = (await host.aes_ctr_keystream(bytes.fromhex(e["key"]), e["length"])).hex()

    gcm: list[Json] = [
        {
            "source": "GCM specification test case 14",
            "key": bytes(32).hex(),
            "nonce": bytes(12).hex(),
            "aad": "",
            "plaintext": bytes(16).hex(),
        },
        {
            "source": "aad and a partial block",
            "key": fixed("gcm key").hex(),
            "nonce": fixed("gcm nonce", 12).hex(),
            "aad": b"dandelion".hex(),
            "plaintext": fixed("gcm plaintext", 45).hex(),
        },
    ]
    for e in gcm:
        e["ciphertext"] = (
            await host.aes_gcm_encrypt(
                bytes.fromhex(e["key"]),
                bytes.fromhex(e["nonce"]),
                bytes.fromhex(e["plaintext"]),
                bytes.fromhex(e["aad"]),
            )
        ).hex()

    draws = [fixed(f"coefficient {c}", 66) for c in range(2)]
    stream = iter(draws)
    secret = fixed("secret")
    shares = split(secret, 3, [1, 2, 4, 5, 7], lambda n: next(stream))
    shamir = [
        {
            "secret": secret.hex(),
            "threshold": 3,
            "random": [r.hex() for r in draws],
            "shares": {str(x): s.hex() for x, s in shares.items()},
        }
    ]

    values = [0.0, 1.0, -1.0, 0.3, -0.3, 2.5, 100.0, -100.0, 0.5 / 2**16, -0.5 / 2**16, 1e-9]
    fixed_point = [
        {
            "values": values,
            "clip_norm": 10.0,
            "scale_bits": 16,
            "encoded": encode(values, 10.0, 16).hex(),
        }
    ]

    graphs = []
    for n, k in ((10, 4), (7, 6), (12, 11)):
        g = neighbourhoods(n, k, salt)
        graphs.append(
            {
                "n": n,
                "degree": k,
                "salt": salt.hex(),
                "neighbours": {str(i): sorted(g[i]) for i in sorted(g)},
            }
        )

    k12 = await share_key(host, salt, keys[1][0], pub[2][0], 1, 2)
    seed3 = fixed("self-mask seed 3")
    encoded3 = encode([0.25, -0.5, 1.0, 0.0, -1.0, 0.125, 2.0, -2.0], 10.0, 16)
    peers3 = {j: pub[j][1] for j in (1, 2, 5)}
    derivations = {
        "round_context": {"task": task, "round": rnd, "seed": seed.hex(), "salt": salt.hex()},
        "share_key": {
            "i": 1,
            "j": 2,
            "c_sk_i": keys[1][0].hex(),
            "c_pk_j": pub[2][0].hex(),
            "key": k12.hex(),
        },
        "share_ciphertext": {
            "key": k12.hex(),
            "sender": 1,
            "receiver": 2,
            "s_share": shares[1].hex(),
            "b_share": shares[2].hex(),
            "ciphertext": (await encrypt_share(host, k12, 1, 2, shares[1], shares[2])).hex(),
        },
        "pairwise_mask": {
            "i": 3,
            "j": 5,
            "s_sk_i": keys[3][1].hex(),
            "s_pk_j": pub[5][1].hex(),
            "d": d,
            "mask": (await pairwise_mask(host, salt, keys[3][1], pub[5][1], 3, 5, d)).hex(),
        },
        "self_mask": {
            "i": 3,
            "seed": seed3.hex(),
            "d": d,
            "key": (await self_mask_key(host, salt, seed3, 3)).hex(),
            "mask": (await self_mask(host, salt, seed3, 3, d)).hex(),
        },
        "masked_input": {
            "i": 3,
            "s_sk_i": keys[3][1].hex(),
            "seed": seed3.hex(),
            "d": d,
            "peers": {str(j): pk.hex() for j, pk in peers3.items()},
            "encoded": encoded3.hex(),
            "masked": (
                await mask_input(
                    host, StdlibMod32(), salt, 3, keys[3][1], seed3, peers3, encoded3, d
                )
            ).hex(),
        },
    }
    return {
        "format": "dandelion-secagg-vectors-1",
        "description": (
            "Fixed inputs and outputs of secure aggregation's cryptography "
            "(docs/secure_aggregation.md). Byte strings are lowercase hex; vectors are "
            "little-endian uint32. Every host must reproduce every output byte for byte."
        ),
        "salt_of_derivations": salt.hex(),
        "x25519": x25519,
        "hkdf_sha256": hkdf,
        "aes_256_ctr": ctr,
        "aes_256_gcm": gcm,
        "shamir": shamir,
        "fixed_point": fixed_point,
        "graph": graphs,
        "derivations": derivations,
    }


def render(vectors: Json) -> str:
    return json.dumps(vectors, indent=2) + "\n"


def main() -> None:
    OUT.write_text(render(asyncio.run(build())))


if __name__ == "__main__":
    main()
