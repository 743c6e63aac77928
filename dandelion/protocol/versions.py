"""Protocol versions this code speaks, and how a version is chosen.

Rule (also in schemas/README.md): a worker's hello carries ``v`` (the highest version it
speaks) and ``versions`` (every version it speaks). The coordinator answers with the highest
version both speak, in ``welcome.v``; every later message of that connection carries that
``v``. With no common version the coordinator answers ``reject`` with reason
``unsupported_version`` and lists its own versions. A change that a version-1 peer would
misread (a removed or retyped field, a new required field, a new meaning) takes a new version;
adding an optional field or a new enum value that old peers may ignore does not.
"""

from __future__ import annotations

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "choose_version"]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)


def choose_version(offered: list[int] | tuple[int, ...]) -> int | None:
    """Return the highest version in ``offered`` that this code speaks, or None."""
    common = set(offered) & set(SUPPORTED_VERSIONS)
    return max(common) if common else None
