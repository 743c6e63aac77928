"""Masking an encoded update and cancelling the masks of a sum (docs/secure_aggregation.md,
phases 3 and 5). Both sides use the same two functions, so the signs agree by construction.

Rules of this file: pure functions of their inputs; crypto through the injected
:class:`~dandelion.protocol.secagg.crypto.CryptoHost`, vector arithmetic through the injected
:class:`~dandelion.protocol.secagg.vectors.Mod32Ops`. Participant i adds Pair(i, j) for a
neighbour j > i and subtracts it for j < i, so every pair cancels in the sum.
"""

from __future__ import annotations

from collections.abc import Mapping

from .crypto import CryptoHost
from .derivation import pairwise_mask, self_mask
from .vectors import Buffer, Mod32Ops, check_vector_bytes

__all__ = ["mask_input", "pairwise_correction"]


async def mask_input(
    crypto: CryptoHost,
    ops: Mod32Ops,
    salt: bytes,
    index: int,
    s_sk: bytes,
    seed: bytes,
    peers: Mapping[int, bytes],
    encoded: Buffer,
    d: int,
) -> bytearray:
    """y = x + SelfMask(index) + sum_{j > index} Pair - sum_{j < index} Pair (mod 2^32).

    ``peers`` maps each neighbour masked with to its s public key. Raises SecAggViolation for
    an ``encoded`` that is not d values, CryptoError for a public key that agrees on nothing.
    """
    check_vector_bytes(encoded, d)
    masked = bytearray(encoded)
    ops.add_into(masked, await self_mask(crypto, salt, seed, index, d))
    for j in sorted(peers):
        mask = await pairwise_mask(crypto, salt, s_sk, peers[j], index, j, d)
        (ops.add_into if j > index else ops.sub_into)(masked, mask)
    return masked


async def pairwise_correction(
    crypto: CryptoHost,
    ops: Mod32Ops,
    correction: bytearray,
    salt: bytes,
    dropped: int,
    s_sk: bytes,
    survivors: Mapping[int, bytes],
    d: int,
) -> None:
    """Add to ``correction`` (what the server takes away from the sum) the masks that
    ``survivors`` (index -> s public key) put in for their pair with ``dropped``, whose rebuilt
    s private key is ``s_sk``. A survivor j added Pair(j, dropped) when dropped > j and
    subtracted it otherwise."""
    for j in sorted(survivors):
        mask = await pairwise_mask(crypto, salt, s_sk, survivors[j], dropped, j, d)
        (ops.add_into if dropped > j else ops.sub_into)(correction, mask)
