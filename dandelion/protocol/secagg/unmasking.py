"""The unmasking's arithmetic: the masks' total that the server takes away from the masked sum
(docs/secure_aggregation.md, phase 5).

Rules of this file: an :class:`Unmasking` is built by the server from its state when the unmask
phase closes and owns copies of everything it reads (shares, keys, neighbourhoods), so that
:meth:`Unmasking.correction` can run anywhere — in place, or in a worker thread chosen by the
caller through an :data:`Offload` — while the server's own state is left alone. It touches no
socket and no clock; crypto through the injected host, vectors through the injected ops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .crypto import CryptoHost
from .derivation import self_mask
from .errors import ReconstructionError
from .masking import pairwise_correction
from .shamir import reconstruct
from .vectors import Mod32Ops

__all__ = ["Offload", "Unmasking", "in_place"]

#: Runs the unmasking's CPU-heavy part: awaits the coroutine function it is given (a worker
#: thread in the coordinator, so that the event loop goes on serving other connections).
Offload = Callable[[Callable[[], Awaitable[bytearray]]], Awaitable[bytearray]]


async def in_place(work: Callable[[], Awaitable[bytearray]]) -> bytearray:
    """The default :data:`Offload`: the work runs where the server runs."""
    return await work()


@dataclass(frozen=True, slots=True)
class Unmasking:
    """What the masks' total is computed from, copied out of the server."""

    crypto: CryptoHost
    ops: Mod32Ops
    salt: bytes
    threshold: int
    dimension: int
    #: Each dropped participant's s-key shares by holder, its advertised s public key, and
    #: the survivors it was masked with (index -> their s public key).
    dropped: Mapping[int, tuple[Mapping[int, bytes], bytes, Mapping[int, bytes]]]
    #: Each survivor's self-mask-seed shares, by holder.
    survivors: Mapping[int, Mapping[int, bytes]]

    async def correction(self) -> bytearray:
        """The pairwise masks the survivors shared with the dropped plus the survivors' self
        masks. Raises ReconstructionError (shares that rebuild nothing, or a key that is not
        the advertised one) and CryptoError (a survivor's key that agrees on nothing)."""
        crypto, ops, t, d = self.crypto, self.ops, self.threshold, self.dimension
        correction = ops.zeros(d)
        for i in sorted(self.dropped):
            shares, s_pk, masked_with = self.dropped[i]
            s_sk = reconstruct(dict(shares), t)
            if await crypto.x25519_public(s_sk) != s_pk:
                raise ReconstructionError(f"the rebuilt s key of {i} is not the advertised")
            await pairwise_correction(crypto, ops, correction, self.salt, i, s_sk, masked_with, d)
        for i in sorted(self.survivors):
            seed = reconstruct(dict(self.survivors[i]), t)
            ops.add_into(correction, await self_mask(crypto, self.salt, seed, i, d))
        return correction
