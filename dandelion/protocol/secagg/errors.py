"""Secure aggregation's exceptions, inside the protocol's tree (:mod:`dandelion.protocol.errors`).

::

    DandelionProtocolError
    ├── SecAggConfigError         parameters that the protocol cannot run with (n, k, t, scale)
    ├── ReconstructionError       shares that do not rebuild one secret (too few, or disagreeing)
    └── RemoteProtocolError
        └── SecAggViolation       a peer's secure-aggregation message that breaks the protocol:
            └── CryptoError       a ciphertext that does not authenticate, a key that is not one
"""

from __future__ import annotations

from ..errors import DandelionProtocolError, RemoteProtocolError

__all__ = ["CryptoError", "ReconstructionError", "SecAggConfigError", "SecAggViolation"]


class SecAggConfigError(DandelionProtocolError, ValueError):
    """Round parameters the protocol refuses (degree, threshold, fixed-point range)."""


class ReconstructionError(DandelionProtocolError):
    """Shamir shares that cannot rebuild a secret: fewer than t, or not on one polynomial."""


class SecAggViolation(RemoteProtocolError):
    """A secure-aggregation message that is well-formed JSON but breaks the protocol."""

    code = "secagg_violation"


class CryptoError(SecAggViolation):
    """A ciphertext that does not authenticate, or a public key that yields no agreement."""

    code = "secagg_crypto"
