"""How secure aggregation turns agreements and seeds into keys, ciphertexts and masks.

Every byte layout here is in docs/secure_aggregation.md (Key derivation and encryption) and
fixed by schemas/secagg/vectors.json. The cryptography itself is the injected
:class:`~dandelion.protocol.secagg.crypto.CryptoHost`.
"""

from __future__ import annotations

import struct

from .crypto import KEY_BYTES, CryptoHost
from .errors import CryptoError
from .shamir import SHARE_BYTES

__all__ = [
    "SHARE_PLAINTEXT_BYTES",
    "decrypt_share",
    "encrypt_share",
    "pair_info",
    "pairwise_mask",
    "self_mask",
    "self_mask_key",
    "share_key",
    "share_nonce",
]

SHARE_AAD_LABEL = b"dandelion-secagg-v1 share"
SHARE_PLAINTEXT_BYTES = 8 + 2 * SHARE_BYTES
_PAIR = struct.Struct(">II")


def pair_info(label: bytes, i: int, j: int) -> bytes:
    """HKDF info for a pair: the label and both indices, smaller first."""
    return label + _PAIR.pack(min(i, j), max(i, j))


async def share_key(
    crypto: CryptoHost, salt: bytes, c_sk: bytes, c_pk: bytes, i: int, j: int
) -> bytes:
    """The AES-256-GCM key that i and j encrypt their shares to each other with."""
    agreed = await crypto.x25519_agree(c_sk, c_pk)
    return await crypto.hkdf_sha256(agreed, salt, pair_info(b"share", i, j), KEY_BYTES)


def share_nonce(sender: int, receiver: int) -> bytes:
    """u32(sender) || u32(receiver) || 4 zero bytes: one message per key and direction."""
    return _PAIR.pack(sender, receiver) + bytes(4)


def _aad(sender: int, receiver: int) -> bytes:
    return SHARE_AAD_LABEL + _PAIR.pack(sender, receiver)


async def encrypt_share(
    crypto: CryptoHost, key: bytes, sender: int, receiver: int, s_share: bytes, b_share: bytes
) -> bytes:
    """The ciphertext carrying sender's shares of its s key and self-mask seed to receiver."""
    plaintext = _PAIR.pack(sender, receiver) + s_share + b_share
    return await crypto.aes_gcm_encrypt(
        key, share_nonce(sender, receiver), plaintext, _aad(sender, receiver)
    )


async def decrypt_share(
    crypto: CryptoHost, key: bytes, sender: int, receiver: int, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """(s-key share, self-mask-seed share) from sender's ciphertext to receiver.

    Raises CryptoError when it does not authenticate or names other indices."""
    plaintext = await crypto.aes_gcm_decrypt(
        key, share_nonce(sender, receiver), ciphertext, _aad(sender, receiver)
    )
    if len(plaintext) != SHARE_PLAINTEXT_BYTES or plaintext[:8] != _PAIR.pack(sender, receiver):
        raise CryptoError(f"share ciphertext from {sender} to {receiver} names other indices")
    return plaintext[8 : 8 + SHARE_BYTES], plaintext[8 + SHARE_BYTES :]


async def pairwise_mask(
    crypto: CryptoHost, salt: bytes, s_sk: bytes, s_pk: bytes, i: int, j: int, d: int
) -> bytes:
    """The d-value mask i and j share: AES-CTR under HKDF of their s-key agreement."""
    agreed = await crypto.x25519_agree(s_sk, s_pk)
    key = await crypto.hkdf_sha256(agreed, salt, pair_info(b"pairwise-mask", i, j), KEY_BYTES)
    return await crypto.aes_ctr_keystream(key, 4 * d)


async def self_mask_key(crypto: CryptoHost, salt: bytes, seed: bytes, i: int) -> bytes:
    """The AES-256 key of i's self mask, from its seed b."""
    return await crypto.hkdf_sha256(seed, salt, b"self-mask" + struct.pack(">I", i), KEY_BYTES)


async def self_mask(crypto: CryptoHost, salt: bytes, seed: bytes, i: int, d: int) -> bytes:
    """i's d-value self mask."""
    return await crypto.aes_ctr_keystream(await self_mask_key(crypto, salt, seed, i), 4 * d)
