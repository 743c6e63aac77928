"""Secure aggregation (SecAgg+, Bell et al. 2020), sans I/O: the arithmetic, the messages and
both sides' state machines (docs/secure_aggregation.md).

Standard library only, so that it runs in the worker, also in Pyodide; the cryptography comes
from an injected :class:`CryptoHost` and the vector arithmetic from an injected
:class:`Mod32Ops`.
"""

from __future__ import annotations

from .crypto import CryptoHost
from .errors import CryptoError, ReconstructionError, SecAggConfigError, SecAggViolation
from .fixedpoint import check_range, decode_sum, default_scale_bits, encode
from .graph import default_degree, default_threshold, neighbourhoods, round_salt
from .params import SecAggParams, Timeouts
from .shamir import PRIME, reconstruct, split
from .vectors import Mod32Ops, StdlibMod32

__all__ = [
    "PRIME",
    "CryptoError",
    "CryptoHost",
    "Mod32Ops",
    "ReconstructionError",
    "SecAggConfigError",
    "SecAggParams",
    "SecAggViolation",
    "StdlibMod32",
    "Timeouts",
    "check_range",
    "decode_sum",
    "default_degree",
    "default_scale_bits",
    "default_threshold",
    "encode",
    "neighbourhoods",
    "reconstruct",
    "round_salt",
    "split",
]
