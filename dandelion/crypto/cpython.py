"""The crypto host on CPython, on the ``cryptography`` package (OpenSSL underneath)."""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dandelion.protocol.secagg.crypto import KEY_BYTES, NONCE_BYTES, CryptoHost
from dandelion.protocol.secagg.errors import CryptoError

__all__ = ["CryptographyHost"]

_ZERO_BLOCK = bytes(16)


def _key(value: bytes, what: str) -> bytes:
    if len(value) != KEY_BYTES:
        raise CryptoError(f"{what} must be {KEY_BYTES} bytes, not {len(value)}")
    return value


class CryptographyHost(CryptoHost):
    """:class:`CryptoHost` on ``cryptography``. Its coroutines never suspend: the work is
    done in place (an agreement takes about 0.1 ms, a 400 KB keystream about 0.3 ms)."""

    def random_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)

    async def x25519_public(self, private: bytes) -> bytes:
        key = X25519PrivateKey.from_private_bytes(_key(private, "an X25519 private key"))
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    async def x25519_agree(self, private: bytes, peer_public: bytes) -> bytes:
        key = X25519PrivateKey.from_private_bytes(_key(private, "an X25519 private key"))
        peer = X25519PublicKey.from_public_bytes(_key(peer_public, "an X25519 public key"))
        try:
            return key.exchange(peer)
        except ValueError as exc:  # an all-zero shared secret: a small-order public key
            raise CryptoError(f"X25519 agreement failed: {exc}") from None

    async def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)

    async def aes_gcm_encrypt(
        self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
    ) -> bytes:
        if len(nonce) != NONCE_BYTES:
            raise CryptoError(f"an AES-GCM nonce must be {NONCE_BYTES} bytes")
        return AESGCM(_key(key, "an AES-256 key")).encrypt(nonce, plaintext, aad)

    async def aes_gcm_decrypt(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes
    ) -> bytes:
        if len(nonce) != NONCE_BYTES:
            raise CryptoError(f"an AES-GCM nonce must be {NONCE_BYTES} bytes")
        try:
            return AESGCM(_key(key, "an AES-256 key")).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise CryptoError("ciphertext does not authenticate") from None

    async def aes_ctr_keystream(self, key: bytes, length: int) -> bytes:
        cipher = Cipher(algorithms.AES(_key(key, "an AES-256 key")), modes.CTR(_ZERO_BLOCK))
        encryptor = cipher.encryptor()
        return encryptor.update(bytes(length)) + encryptor.finalize()
