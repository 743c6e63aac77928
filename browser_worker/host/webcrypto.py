"""Secure aggregation's crypto host in the browser: WebCrypto through Pyodide's ``js``.

:class:`WebCryptoHost` implements :class:`dandelion.protocol.secagg.crypto.CryptoHost` with
``crypto.subtle`` (X25519 since Chromium 133, HKDF-SHA-256, AES-256-GCM, AES-256-CTR) and
``crypto.getRandomValues``; :class:`TypedArrayMod32` adds and subtracts vectors modulo 2^32
in JavaScript on ``Uint32Array`` views, where a store wraps modulo 2^32 by itself. Both give the
bytes ``schemas/secagg/vectors.json`` holds, as the CPython host does
(``tests/browser/test_secagg_webcrypto.py``).

WebCrypto takes X25519 private keys only wrapped (PKCS #8) and has no "public key of this
private key" call: the key is imported extractable and its JWK export gives ``x``, the public
key. Only importable in Pyodide.
"""

from __future__ import annotations

import base64
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]

from dandelion.protocol.secagg.crypto import KEY_BYTES, NONCE_BYTES, CryptoHost
from dandelion.protocol.secagg.errors import CryptoError
from dandelion.protocol.secagg.vectors import Buffer, Mod32Ops

__all__ = ["TypedArrayMod32", "WebCryptoHost"]

#: DER prefix of a PKCS #8 X25519 private key (RFC 8410): the 32 raw bytes follow it.
_PKCS8_X25519 = bytes.fromhex("302e020100300506032b656e04220420")
_RANDOM_CHUNK = 65536  # getRandomValues fills at most this many bytes per call
_ZERO_BLOCK = bytes(16)


def _u8(data: Buffer) -> Any:
    return to_js(bytes(data))


def _bytes(buffer: Any) -> bytes:
    return bytes(js.Uint8Array.new(buffer).to_py())


def _obj(**fields: Any) -> Any:
    return js.Object.fromEntries(to_js(list(fields.items())))


def _check_key(value: bytes, what: str) -> None:
    if len(value) != KEY_BYTES:
        raise CryptoError(f"{what} must be {KEY_BYTES} bytes, not {len(value)}")


class WebCryptoHost(CryptoHost):
    """:class:`CryptoHost` on the browser's ``crypto.subtle``."""

    def __init__(self) -> None:
        self.subtle = js.crypto.subtle

    def random_bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = js.Uint8Array.new(min(_RANDOM_CHUNK, n - len(out)))
            js.crypto.getRandomValues(chunk)
            out += bytes(chunk.to_py())
        return bytes(out)

    async def _private(self, private: bytes, usages: list[str], extractable: bool) -> Any:
        _check_key(private, "an X25519 private key")
        return await self.subtle.importKey(
            "pkcs8", _u8(_PKCS8_X25519 + private), "X25519", extractable, to_js(usages)
        )

    async def x25519_public(self, private: bytes) -> bytes:
        key = await self._private(private, ["deriveBits"], True)
        jwk = await self.subtle.exportKey("jwk", key)
        x = str(jwk.x)
        return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))

    async def x25519_agree(self, private: bytes, peer_public: bytes) -> bytes:
        _check_key(peer_public, "an X25519 public key")
        key = await self._private(private, ["deriveBits"], False)
        try:
            peer = await self.subtle.importKey("raw", _u8(peer_public), "X25519", True, to_js([]))
            shared = _bytes(
                await self.subtle.deriveBits(_obj(name="X25519", public=peer), key, 256)
            )
        except JsException as exc:
            raise CryptoError(f"X25519 agreement failed: {exc}") from None
        if shared == bytes(KEY_BYTES):
            raise CryptoError("X25519 agreement failed: an all-zero shared secret")
        return shared

    async def hkdf_sha256(self, ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
        key = await self.subtle.importKey("raw", _u8(ikm), "HKDF", False, to_js(["deriveBits"]))
        params = _obj(name="HKDF", hash="SHA-256", salt=_u8(salt), info=_u8(info))
        return _bytes(await self.subtle.deriveBits(params, key, 8 * length))

    async def _aes(self, key: bytes, name: str, usage: str) -> Any:
        _check_key(key, "an AES-256 key")
        return await self.subtle.importKey("raw", _u8(key), name, False, to_js([usage]))

    async def aes_gcm_encrypt(
        self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes
    ) -> bytes:
        if len(nonce) != NONCE_BYTES:
            raise CryptoError(f"an AES-GCM nonce must be {NONCE_BYTES} bytes")
        k = await self._aes(key, "AES-GCM", "encrypt")
        params = _obj(name="AES-GCM", iv=_u8(nonce), additionalData=_u8(aad), tagLength=128)
        return _bytes(await self.subtle.encrypt(params, k, _u8(plaintext)))

    async def aes_gcm_decrypt(
        self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes
    ) -> bytes:
        if len(nonce) != NONCE_BYTES:
            raise CryptoError(f"an AES-GCM nonce must be {NONCE_BYTES} bytes")
        k = await self._aes(key, "AES-GCM", "decrypt")
        params = _obj(name="AES-GCM", iv=_u8(nonce), additionalData=_u8(aad), tagLength=128)
        try:
            return _bytes(await self.subtle.decrypt(params, k, _u8(ciphertext)))
        except JsException:
            raise CryptoError("ciphertext does not authenticate") from None

    async def aes_ctr_keystream(self, key: bytes, length: int) -> bytes:
        k = await self._aes(key, "AES-CTR", "encrypt")
        params = _obj(name="AES-CTR", counter=_u8(_ZERO_BLOCK), length=128)
        # the keystream is the encryption of zeros (a typed array is zero-filled)
        return _bytes(await self.subtle.encrypt(params, k, js.Uint8Array.new(length)))


_OPS = js.Function.new(
    "acc",
    "other",
    "sign",
    """
    const a = new Uint32Array(acc.buffer, acc.byteOffset, acc.byteLength >>> 2);
    const b = new Uint32Array(other.buffer, other.byteOffset, other.byteLength >>> 2);
    if (sign > 0) { for (let i = 0; i < a.length; i++) a[i] += b[i]; }
    else { for (let i = 0; i < a.length; i++) a[i] -= b[i]; }
    return acc;
    """,
)


class TypedArrayMod32(Mod32Ops):
    """Vectors modulo 2^32 added in JavaScript: each call copies both vectors into the JS heap
    once and the sum back once, and the loop runs at typed-array speed."""

    def _apply(self, acc: bytearray, other: Buffer, sign: int) -> None:
        if len(acc) != memoryview(other).nbytes:
            raise ValueError("vectors of different lengths")
        if len(acc) % 4:
            raise ValueError("a vector of 32-bit values has a length divisible by 4")
        out = _OPS(_u8(acc), _u8(other), sign)
        acc[:] = bytes(out.to_py())

    def add_into(self, acc: bytearray, other: Buffer) -> None:
        self._apply(acc, other, 1)

    def sub_into(self, acc: bytearray, other: Buffer) -> None:
        self._apply(acc, other, -1)
