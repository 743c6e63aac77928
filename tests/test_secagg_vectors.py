"""The CPython crypto host reproduces schemas/secagg/vectors.json byte for byte: every output is
recomputed from the file's own inputs, the published anchors hold their published values, and
the generator writes exactly the committed file. The browser host reproduces the same file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from dandelion.crypto import CryptographyHost, NumpyMod32
from dandelion.protocol.secagg import (
    StdlibMod32,
    decode_sum,
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
from dandelion.protocol.secagg.masking import mask_input

FOLDER = Path(__file__).resolve().parent.parent / "schemas" / "secagg"
VECTORS: dict[str, Any] = json.loads((FOLDER / "vectors.json").read_text())
HOST = CryptographyHost()
SALT = bytes.fromhex(VECTORS["salt_of_derivations"])


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_the_published_anchors_hold_their_published_values() -> None:
    by_source = {
        e["source"]: e
        for kind in ("x25519", "hkdf_sha256", "aes_256_ctr", "aes_256_gcm")
        for e in VECTORS[kind]
    }
    assert by_source["RFC 7748 section 6.1"]["shared"] == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    assert by_source["RFC 5869 test case 1"]["okm"] == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert by_source["GCM specification test case 14"]["ciphertext"] == (
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    )
    assert by_source["AES-256 known answer: zero key, zero block"]["keystream"] == (
        "dc95c078a2408989ad48a21492842087"
    )


@pytest.mark.parametrize("e", VECTORS["x25519"], ids=lambda e: e["source"])
async def test_x25519(e: dict[str, Any]) -> None:
    assert (await HOST.x25519_public(h(e["private"]))).hex() == e["public"]
    assert (await HOST.x25519_public(h(e["peer_private"]))).hex() == e["peer_public"]
    assert (await HOST.x25519_agree(h(e["private"]), h(e["peer_public"]))).hex() == e["shared"]
    assert (await HOST.x25519_agree(h(e["peer_private"]), h(e["public"]))).hex() == e["shared"]


@pytest.mark.parametrize("e", VECTORS["hkdf_sha256"], ids=lambda e: e["source"])
async def test_hkdf(e: dict[str, Any]) -> None:
    okm = await HOST.hkdf_sha256(h(e["ikm"]), h(e["salt"]), h(e["info"]), e["length"])
    assert okm.hex() == e["okm"]


@pytest.mark.parametrize("e", VECTORS["aes_256_ctr"], ids=lambda e: e["source"])
async def test_aes_ctr(e: dict[str, Any]) -> None:
    assert (await HOST.aes_ctr_keystream(h(e["key"]), e["length"])).hex() == e["keystream"]


@pytest.mark.parametrize("e", VECTORS["aes_256_gcm"], ids=lambda e: e["source"])
async def test_aes_gcm(e: dict[str, Any]) -> None:
    args = h(e["key"]), h(e["nonce"])
    sealed = await HOST.aes_gcm_encrypt(*args, h(e["plaintext"]), h(e["aad"]))
    assert sealed.hex() == e["ciphertext"]
    assert (await HOST.aes_gcm_decrypt(*args, sealed, h(e["aad"]))).hex() == e["plaintext"]


@pytest.mark.parametrize("e", VECTORS["shamir"])
def test_shamir(e: dict[str, Any]) -> None:
    draws = iter(h(r) for r in e["random"])
    xs = [int(x) for x in e["shares"]]
    shares = split(h(e["secret"]), e["threshold"], xs, lambda n: next(draws))
    assert {str(x): s.hex() for x, s in shares.items()} == e["shares"]
    last = dict(list(shares.items())[-e["threshold"] :])
    assert reconstruct(last, e["threshold"]).hex() == e["secret"]


def test_fixed_point() -> None:
    for e in VECTORS["fixed_point"]:
        raw = encode(e["values"], e["clip_norm"], e["scale_bits"])
        assert raw.hex() == e["encoded"]
        assert NumpyMod32().encode(e["values"], e["clip_norm"], e["scale_bits"]) == raw
        step = 2.0 ** -e["scale_bits"]
        for got, x in zip(decode_sum(raw, e["scale_bits"]), e["values"], strict=True):
            assert abs(got - max(-e["clip_norm"], min(e["clip_norm"], x))) <= step / 2


def test_graph() -> None:
    for e in VECTORS["graph"]:
        g = neighbourhoods(e["n"], e["degree"], h(e["salt"]))
        assert {str(i): sorted(g[i]) for i in sorted(g)} == e["neighbours"]


async def test_protocol_derivations() -> None:
    d = VECTORS["derivations"]
    ctx = d["round_context"]
    assert round_salt(ctx["task"], ctx["round"], h(ctx["seed"])).hex() == ctx["salt"] == SALT.hex()
    sk = d["share_key"]
    key = await share_key(HOST, SALT, h(sk["c_sk_i"]), h(sk["c_pk_j"]), sk["i"], sk["j"])
    assert key.hex() == sk["key"]
    sc = d["share_ciphertext"]
    sealed = await encrypt_share(
        HOST, h(sc["key"]), sc["sender"], sc["receiver"], h(sc["s_share"]), h(sc["b_share"])
    )
    assert sealed.hex() == sc["ciphertext"]
    assert await decrypt_share(HOST, h(sc["key"]), sc["sender"], sc["receiver"], sealed) == (
        h(sc["s_share"]),
        h(sc["b_share"]),
    )
    pm = d["pairwise_mask"]
    mask = await pairwise_mask(
        HOST, SALT, h(pm["s_sk_i"]), h(pm["s_pk_j"]), pm["i"], pm["j"], pm["d"]
    )
    assert mask.hex() == pm["mask"]
    sm = d["self_mask"]
    assert (await self_mask_key(HOST, SALT, h(sm["seed"]), sm["i"])).hex() == sm["key"]
    assert (await self_mask(HOST, SALT, h(sm["seed"]), sm["i"], sm["d"])).hex() == sm["mask"]


@pytest.mark.parametrize("ops", [StdlibMod32(), NumpyMod32()], ids=["stdlib", "numpy"])
async def test_masked_input(ops: StdlibMod32 | NumpyMod32) -> None:
    m = VECTORS["derivations"]["masked_input"]
    peers = {int(j): h(pk) for j, pk in m["peers"].items()}
    masked = await mask_input(
        HOST, ops, SALT, m["i"], h(m["s_sk_i"]), h(m["seed"]), peers, h(m["encoded"]), m["d"]
    )
    assert masked.hex() == m["masked"]


async def test_the_generator_writes_exactly_the_committed_file() -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", FOLDER / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(await module.build()) == (FOLDER / "vectors.json").read_text()
