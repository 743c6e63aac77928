"""Run inside Pyodide (tests/browser/test_secagg_webcrypto.py sends this file to the page):
recompute every output of schemas/secagg/vectors.json with the browser's crypto host
(WebCrypto) and typed-array vectors, and return what came out, as hex, for CPython to compare
byte for byte. Standard library and the worker wheel only."""

from __future__ import annotations

import time
from typing import Any

from browser_worker.host.webcrypto import TypedArrayMod32, WebCryptoHost
from dandelion.protocol.secagg import (
    StdlibMod32,
    encode,
    neighbourhoods,
    reconstruct,
    round_salt,
    split,
)
from dandelion.protocol.secagg.derivation import (
    decrypt_share,
    encrypt_share,
    pairwise_mask,
    self_mask,
    self_mask_key,
    share_key,
)
from dandelion.protocol.secagg.errors import CryptoError
from dandelion.protocol.secagg.masking import mask_input


def h(value: str) -> bytes:
    return bytes.fromhex(value)


async def run(v: dict[str, Any]) -> dict[str, Any]:
    host = WebCryptoHost()
    out: dict[str, Any] = {"x25519": [], "hkdf_sha256": [], "aes_256_ctr": [], "aes_256_gcm": []}
    for e in v["x25519"]:
        out["x25519"].append(
            {
                "public": (await host.x25519_public(h(e["private"]))).hex(),
                "peer_public": (await host.x25519_public(h(e["peer_private"]))).hex(),
                "shared": (await host.x25519_agree(h(e["private"]), h(e["peer_public"]))).hex(),
                "shared_back": (
                    await host.x25519_agree(h(e["peer_private"]), h(e["public"]))
                ).hex(),
            }
        )
    for e in v["hkdf_sha256"]:
        okm = await host.hkdf_sha256(h(e["ikm"]), h(e["salt"]), h(e["info"]), e["length"])
        out["hkdf_sha256"].append({"okm": okm.hex()})
    for e in v["aes_256_ctr"]:
        ks = await host.aes_ctr_keystream(h(e["key"]), e["length"])
        out["aes_256_ctr"].append({"keystream": ks.hex()})
    for e in v["aes_256_gcm"]:
        key, nonce, aad = h(e["key"]), h(e["nonce"]), h(e["aad"])
        sealed = await host.aes_gcm_encrypt(key, nonce, h(e["plaintext"]), aad)
        opened = await host.aes_gcm_decrypt(key, nonce, sealed, aad)
        tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
        try:
            await host.aes_gcm_decrypt(key, nonce, tampered, aad)
            refused = ""
        except CryptoError as exc:
            refused = str(exc)
        out["aes_256_gcm"].append(
            {"ciphertext": sealed.hex(), "plaintext": opened.hex(), "tampered": refused}
        )
    try:
        await host.x25519_agree(h(v["x25519"][0]["private"]), bytes(32))
        out["zero_agreement"] = ""
    except CryptoError as exc:
        out["zero_agreement"] = str(exc)
    out["shamir"] = []
    for e in v["shamir"]:
        draws = iter([h(r) for r in e["random"]])
        xs = [int(x) for x in e["shares"]]
        shares = split(h(e["secret"]), e["threshold"], xs, lambda n, it=draws: next(it))
        last = dict(list(shares.items())[-e["threshold"] :])
        out["shamir"].append(
            {
                "shares": {str(x): s.hex() for x, s in shares.items()},
                "secret": reconstruct(last, e["threshold"]).hex(),
            }
        )
    out["fixed_point"] = [
        encode(e["values"], e["clip_norm"], e["scale_bits"]).hex() for e in v["fixed_point"]
    ]
    out["graph"] = [
        {str(i): sorted(g[i]) for i in sorted(g)}
        for g in (neighbourhoods(e["n"], e["degree"], h(e["salt"])) for e in v["graph"])
    ]
    d = v["derivations"]
    ctx = d["round_context"]
    salt = round_salt(ctx["task"], ctx["round"], h(ctx["seed"]))
    sk, sc, pm, sm, m = (
        d["share_key"],
        d["share_ciphertext"],
        d["pairwise_mask"],
        d["self_mask"],
        d["masked_input"],
    )
    sealed = await encrypt_share(
        host, h(sc["key"]), sc["sender"], sc["receiver"], h(sc["s_share"]), h(sc["b_share"])
    )
    s_share, b_share = await decrypt_share(host, h(sc["key"]), sc["sender"], sc["receiver"], sealed)
    peers = {int(j): h(pk) for j, pk in m["peers"].items()}
    masked = {}
    for name, ops in (("stdlib", StdlibMod32()), ("typed_array", TypedArrayMod32())):
        masked[name] = (
            await mask_input(
                host,
                ops,
                salt,
                m["i"],
                h(m["s_sk_i"]),
                h(m["seed"]),
                peers,
                h(m["encoded"]),
                m["d"],
            )
        ).hex()
    out["derivations"] = {
        "salt": salt.hex(),
        "share_key": (
            await share_key(host, salt, h(sk["c_sk_i"]), h(sk["c_pk_j"]), sk["i"], sk["j"])
        ).hex(),
        "share_ciphertext": sealed.hex(),
        "share_opened": [s_share.hex(), b_share.hex()],
        "pairwise_mask": (
            await pairwise_mask(
                host, salt, h(pm["s_sk_i"]), h(pm["s_pk_j"]), pm["i"], pm["j"], pm["d"]
            )
        ).hex(),
        "self_mask_key": (await self_mask_key(host, salt, h(sm["seed"]), sm["i"])).hex(),
        "self_mask": (await self_mask(host, salt, h(sm["seed"]), sm["i"], sm["d"])).hex(),
        "masked_input": masked,
    }
    # figures, not checks: one d = 100,000 mask expansion and one typed-array addition
    big = 100_000
    t0 = time.perf_counter()
    stream = await host.aes_ctr_keystream(bytes(32), 4 * big)
    t1 = time.perf_counter()
    acc = bytearray(stream)
    TypedArrayMod32().add_into(acc, stream)
    t2 = time.perf_counter()
    StdlibMod32().add_into(bytearray(stream), stream)
    t3 = time.perf_counter()
    out["timing_ms"] = {
        "aes_ctr_keystream_d100000": (t1 - t0) * 1000,
        "typed_array_add_d100000": (t2 - t1) * 1000,
        "stdlib_add_d100000": (t3 - t2) * 1000,
    }
    drawn = host.random_bytes(70000)  # more than one getRandomValues call gives
    out["random"] = [len(drawn), len({drawn[i : i + 32] for i in (0, 35000, 69968)})]
    return out
