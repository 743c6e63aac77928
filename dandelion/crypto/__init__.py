"""CPython hosts for secure aggregation: the crypto host on ``cryptography`` and numpy's
mod-2^32 vector operations. Never imported by the protocol or the worker's wheel."""

from __future__ import annotations

from .cpython import CryptographyHost
from .numpy_vectors import NumpyMod32

__all__ = ["CryptographyHost", "NumpyMod32"]
