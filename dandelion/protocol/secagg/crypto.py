"""The crypto host seam: the few primitives secure aggregation needs, behind one interface.

Two implementations: :class:`dandelion.crypto.CryptographyHost` on CPython (the
``cryptography`` package) and, in the browser, WebCrypto through Pyodide's ``js``. Both must
reproduce ``schemas/secagg/vectors.json`` byte for byte.

Rules of this file: an interface only, standard library only. The methods WebCrypto offers
only as promises are coroutines; ``random_bytes`` is plain (``getRandomValues`` is
synchronous). Every method raises :class:`~dandelion.protocol.secagg.errors.CryptoError` for
input it cannot take (a public key that is not one, a tag that does not authenticate).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "CryptoHost"]

#: X25519 keys and agreements, HKDF outputs used as AES-256 keys, self-mask seeds.
KEY_BYTES = 32
#: AES-GCM nonce length.
NONCE_BYTES = 12
#: AES-GCM tag length, appended to the ciphertext.
TAG_BYTES = 16


class CryptoHost(ABC):
    """X25519, HKDF-SHA-256, AES-256-GCM, AES-256-CTR and a secure random source."""

    @abstractmethod
    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes from a cryptographically secure generator."""

    @abstractmethod
    async def x25519_public(self, private: bytes) -> bytes:
        """Return the 32-byte public key of a 32-byte X25519 private key (RFC 7748)."""

    @abstractmethod
    async def x25519_agree(self, private: bytes, peer_public: bytes) -> bytes:
        """Return the 32-byte X25519 shared secret. Raises CryptoError for an all-zero one."""

    @abstractmethod
    async def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        """Return ``length`` bytes of HKDF-SHA-256 (RFC 5869)."""

    @abstractmethod
    async def aes_gcm_encrypt(
        self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
    ) -> bytes:
        """Return AES-256-GCM ciphertext with the 16-byte tag appended."""

    @abstractmethod
    async def aes_gcm_decrypt(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes
    ) -> bytes:
        """Return the plaintext. Raises CryptoError when the tag does not authenticate."""

    @abstractmethod
    async def aes_ctr_keystream(self, key: bytes, length: int) -> bytes:
        """Return ``length`` bytes of AES-256-CTR keystream: initial counter block zero, the
        whole 16-byte block incremented as a big-endian integer."""
