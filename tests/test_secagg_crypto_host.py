"""The CPython crypto host against the primitives' published test vectors (RFC 7748, RFC 5869,
the AES and GCM specifications), and the protocol's derivations built on it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dandelion.crypto import CryptographyHost
from dandelion.protocol.secagg import CryptoError, round_salt
from dandelion.protocol.secagg.derivation import (
    decrypt_share,
    encrypt_share,
    pairwise_mask,
    self_mask,
    share_key,
)

HOST = CryptographyHost()
SALT = round_salt("demo", 1, bytes(32))

# RFC 7748 section 6.1.
ALICE_SK = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PK = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_SK = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PK = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


async def test_x25519_matches_rfc_7748() -> None:
    assert await HOST.x25519_public(ALICE_SK) == ALICE_PK
    assert await HOST.x25519_public(BOB_SK) == BOB_PK
    assert await HOST.x25519_agree(ALICE_SK, BOB_PK) == SHARED
    assert await HOST.x25519_agree(BOB_SK, ALICE_PK) == SHARED


async def test_a_small_order_public_key_is_refused() -> None:
    with pytest.raises(CryptoError, match="agreement failed"):
        await HOST.x25519_agree(ALICE_SK, bytes(32))
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        await HOST.x25519_agree(ALICE_SK, bytes(31))


async def test_hkdf_matches_rfc_5869_case_1() -> None:
    okm = await HOST.hkdf_sha256(b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


async def test_aes_gcm_matches_the_gcm_specification_cases_13_and_14() -> None:
    key, nonce = bytes(32), bytes(12)
    assert (await HOST.aes_gcm_encrypt(key, nonce, b"", b"")).hex() == (
        "530f8afbc74536b9a963b4f1c4cb738b"
    )
    sealed = await HOST.aes_gcm_encrypt(key, nonce, bytes(16), b"")
    assert sealed.hex() == "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    assert await HOST.aes_gcm_decrypt(key, nonce, sealed, b"") == bytes(16)


async def test_aes_gcm_refuses_a_changed_byte_or_a_wrong_nonce() -> None:
    key, nonce = bytes(range(32)), bytes(12)
    sealed = bytearray(await HOST.aes_gcm_encrypt(key, nonce, b"secret", b"aad"))
    with pytest.raises(CryptoError, match="does not authenticate"):
        await HOST.aes_gcm_decrypt(key, nonce, sealed, b"other aad")
    sealed[0] ^= 1
    with pytest.raises(CryptoError, match="does not authenticate"):
        await HOST.aes_gcm_decrypt(key, nonce, bytes(sealed), b"aad")
    with pytest.raises(CryptoError, match="nonce must be 12"):
        await HOST.aes_gcm_encrypt(key, bytes(8), b"", b"")


async def test_the_ctr_keystream_is_aes_of_counter_blocks_from_zero() -> None:
    # FIPS-197 appendix C.3 gives AES-256 of one block; under the all-zero key, the zero block
    # encrypts to dc95c078a2408989ad48a21492842087 (the known-answer value).
    assert (await HOST.aes_ctr_keystream(bytes(32), 16)).hex() == (
        "dc95c078a2408989ad48a21492842087"
    )
    key = bytes(range(32))
    stream = await HOST.aes_ctr_keystream(key, 16 * 5 + 4)
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    blocks = b"".join(ecb.update(c.to_bytes(16, "big")) for c in range(6))
    assert stream == blocks[: len(stream)]


async def test_share_ciphertexts_round_trip_and_name_their_ends() -> None:
    a_sk, b_sk = HOST.random_bytes(32), HOST.random_bytes(32)
    a_pk, b_pk = await HOST.x25519_public(a_sk), await HOST.x25519_public(b_sk)
    k_ab = await share_key(HOST, SALT, a_sk, b_pk, 3, 7)
    assert k_ab == await share_key(HOST, SALT, b_sk, a_pk, 7, 3)
    s_share, b_share = bytes([1]) * 66, bytes([2]) * 66
    sealed = await encrypt_share(HOST, k_ab, 3, 7, s_share, b_share)
    assert len(sealed) == 156
    assert await decrypt_share(HOST, k_ab, 3, 7, sealed) == (s_share, b_share)
    with pytest.raises(CryptoError):  # relayed as if it came from someone else
        await decrypt_share(HOST, k_ab, 4, 7, sealed)
    with pytest.raises(CryptoError):  # the reverse direction has its own nonce
        await decrypt_share(HOST, k_ab, 7, 3, sealed)


async def test_both_ends_derive_one_pairwise_mask_and_self_masks_differ() -> None:
    a_sk, b_sk = HOST.random_bytes(32), HOST.random_bytes(32)
    a_pk, b_pk = await HOST.x25519_public(a_sk), await HOST.x25519_public(b_sk)
    mask = await pairwise_mask(HOST, SALT, a_sk, b_pk, 2, 5, 10)
    assert len(mask) == 40
    assert mask == await pairwise_mask(HOST, SALT, b_sk, a_pk, 5, 2, 10)
    other_round = round_salt("demo", 2, bytes(32))
    assert mask != await pairwise_mask(HOST, other_round, a_sk, b_pk, 2, 5, 10)
    seed = HOST.random_bytes(32)
    assert await self_mask(HOST, SALT, seed, 2, 10) != await self_mask(HOST, SALT, seed, 3, 10)
    assert (await self_mask(HOST, SALT, seed, 2, 10))[:16] == (
        await self_mask(HOST, SALT, seed, 2, 4)
    )
